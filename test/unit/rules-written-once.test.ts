import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/** Every .ts file of src/ but the generated client, with its text. */
function sources(dir = "src"): { path: string; text: string }[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return path === join("src", "generated") ? [] : sources(path);
    return e.name.endsWith(".ts") ? [{ path, text: readFileSync(path, "utf8") }] : [];
  });
}

const filesWith = (re: RegExp) =>
  sources()
    .filter((f) => re.test(f.text))
    .map((f) => f.path)
    .sort();

describe("rules written once (issue 17 point 1)", () => {
  it("the count-quota lock and count statements live in src/db/count-quota.ts only", () => {
    expect(filesWith(/:quota:/)).toEqual(["src/db/count-quota.ts"]);
    expect(filesWith(/count\(\*\)::int AS n FROM memberships/)).toEqual(["src/db/count-quota.ts"]);
  });

  it("global ids are decoded in src/graphql/ids.ts only", () => {
    expect(filesWith(/Buffer\.from\([^)]*,\s*"base64"\)\.toString\("utf8"\)/).filter((p) => p.startsWith("src/graphql") || p.startsWith("src/modules"))).toEqual(["src/graphql/ids.ts"]);
  });
});
