import { readFileSync } from "node:fs";
import path from "node:path";

/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by function, self
 * time by package / source file, and inclusive time of selected frames.
 *
 *   npx tsx bench/cpuprofile-summary.ts <file.cpuprofile> [top=25] [skip seconds=0]
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  gcMs: number;
  byFunction: { name: string; selfMs: number; pct: number }[];
  byModule: { module: string; selfMs: number; pct: number }[];
  inclusive: { name: string; totalMs: number; pct: number }[];
}

const ROOT = path.resolve(import.meta.dirname, "..");

function moduleOf(url: string): string {
  if (!url) return "(native / V8)";
  const file = url.replace(/^file:\/\//, "");
  const nm = file.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = file.slice(nm + "node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (file.startsWith("node:")) return "node:" + file.slice(5).split("/")[0];
  return path.relative(ROOT, file);
}

const frameName = (n: ProfileNode) =>
  `${n.callFrame.functionName || "(anonymous)"} ${moduleOf(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;

/** `skipMs`: ignore the first samples (start-up, module loading, warm-up). */
export function summarizeProfile(profile: Profile, top = 25, skipMs = 0, untilMs = Infinity): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const delta = (profile.timeDeltas[i] ?? 0) / 1000;
    at += delta;
    if (at < skipMs) continue;
    if (at > untilMs) break;
    self.set(id, (self.get(id) ?? 0) + delta);
  }
  const totalMs = [...self.values()].reduce((a, b) => a + b, 0);
  let idleMs = 0;
  let gcMs = 0;
  const fn = new Map<string, number>();
  const mod = new Map<string, number>();
  for (const [id, ms] of self) {
    const n = byId.get(id)!;
    const name = n.callFrame.functionName;
    if (name === "(idle)") {
      idleMs += ms;
      continue;
    }
    if (name === "(garbage collector)") gcMs += ms;
    const key = frameName(n);
    fn.set(key, (fn.get(key) ?? 0) + ms);
    const m = name.startsWith("(") ? name : moduleOf(n.callFrame.url);
    mod.set(m, (mod.get(m) ?? 0) + ms);
  }
  // Inclusive time per function, counting a recursive frame once.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map<string, number>();
  for (const [id, ms] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      if (n.callFrame.functionName === "(root)" || n.callFrame.functionName === "(idle)") continue;
      const key = frameName(n);
      if (seen.has(key)) continue;
      seen.add(key);
      incl.set(key, (incl.get(key) ?? 0) + ms);
    }
  }
  const busy = totalMs - idleMs;
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return {
    totalMs,
    idleMs,
    gcMs,
    byFunction: sorted(fn).map(([name, selfMs]) => ({ name, selfMs, pct: (100 * selfMs) / busy })),
    byModule: sorted(mod).map(([module, selfMs]) => ({ module, selfMs, pct: (100 * selfMs) / busy })),
    inclusive: sorted(incl).map(([name, totalMs]) => ({ name, totalMs, pct: (100 * totalMs) / busy })),
  };
}

export function formatSummary(s: ProfileSummary): string {
  const busy = s.totalMs - s.idleMs;
  const lines = [
    `profile: ${(s.totalMs / 1000).toFixed(1)} s sampled, busy ${(busy / 1000).toFixed(1)} s (${((100 * busy) / s.totalMs).toFixed(0)}%), GC ${(s.gcMs / 1000).toFixed(2)} s (${((100 * s.gcMs) / busy).toFixed(1)}% of busy)`,
    ``,
    `self time by package / file (% of busy):`,
    ...s.byModule.map((m) => `  ${m.pct.toFixed(1).padStart(5)}%  ${(m.selfMs / 1000).toFixed(2).padStart(6)} s  ${m.module}`),
    ``,
    `self time by function (% of busy):`,
    ...s.byFunction.map((f) => `  ${f.pct.toFixed(1).padStart(5)}%  ${(f.selfMs / 1000).toFixed(2).padStart(6)} s  ${f.name}`),
    ``,
    `inclusive time by function (% of busy):`,
    ...s.inclusive.map((f) => `  ${f.pct.toFixed(1).padStart(5)}%  ${(f.totalMs / 1000).toFixed(2).padStart(6)} s  ${f.name}`),
  ];
  return lines.join("\n");
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: tsx bench/cpuprofile-summary.ts <file.cpuprofile> [top] [skip seconds]");
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  console.log(formatSummary(summarizeProfile(profile, Number(process.argv[3] ?? 25), 1000 * Number(process.argv[4] ?? 0))));
}
