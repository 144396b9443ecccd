import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT, startScript } from "../../bench/processes.ts";

/**
 * Issue 13 point 3: the start scripts carry the V8 flags that keep RSS under
 * 250 MB (docs/performance.md, "Memory at rest and under load"), and the
 * bench starts the server with the same flags and environment as they do.
 */

function checkoutWith(scripts: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), "start-scripts-"));
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ scripts }));
  return dir;
}

describe("start scripts", () => {
  it("both starts keep the heap cap, its growing factor and Prisma's query compiler on Liftoff, with the same flags", () => {
    const tsx = startScript(ROOT, "start");
    const prod = startScript(ROOT, "start:prod");
    expect(prod.flags).toContain("--liftoff-only");
    expect(prod.flags).toContain("--max-old-space-size=224");
    // V8 grows a heap capped under 256 MB by 1.3x what survives a full GC; 1.5x halves the full GCs that re-mark long-lived state (docs/live-updates.md, "Twelfth round").
    expect(prod.flags).toContain("--heap-growing-percent=50");
    expect(tsx.flags).toEqual(prod.flags);
    expect(tsx.env).toEqual(prod.env);
  });

  it("the bench reads a script's environment words and its node flags, not the loader", () => {
    const dir = checkoutWith({
      start: "MALLOC_ARENA_MAX=2 A_B=x=y node --max-old-space-size=224 --import tsx --liftoff-only src/server.ts",
      plain: "node dist/server.js",
    });
    expect(startScript(dir, "start")).toEqual({ env: { MALLOC_ARENA_MAX: "2", A_B: "x=y" }, flags: ["--max-old-space-size=224", "--liftoff-only"] });
    expect(startScript(dir, "plain")).toEqual({ env: {}, flags: [] });
  });
});
