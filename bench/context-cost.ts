import path from "node:path";
import { pathToFileURL } from "node:url";
import { benchOptionsOrExit, int } from "./options.ts";
import { loadFixture } from "./seed.ts";
import type { contextHarness } from "./context-harness.ts";

/**
 * The request context alone, on the warm path (every directory entry
 * cached), checkouts compared in one process, their rounds interleaved so
 * that each lives through the machine's load alike:
 *
 *   DATABASE_URL=... REDIS_URL=redis://127.0.0.1:6379/11 BENCH_DATABASE=tenantgraph_bench_h1 \
 *     npx tsx bench/context-cost.ts base=/work/wt-base after=/work/wt-after
 *
 * Each checkout needs bench/context-harness.ts (copy it into an older one)
 * and the bench database seeded (bench/ab.ts or `npm run bench` does it).
 * Per kind (token, API key) and concurrency (1 and CTX_CONCURRENCY, 16):
 * CPU and wall µs per buildContext, and writes on the store's connection per
 * context: its Redis round trips at concurrency 1 (at 16 ioredis merges the
 * writes of the requests in flight). Medians of CTX_ROUNDS (7) rounds of
 * CTX_REQUESTS (1000) contexts. docs/performance.md, "Fourth round".
 */
const opts = benchOptionsOrExit();
const requests = int(process.env, "CTX_REQUESTS", 1000);
const rounds = int(process.env, "CTX_ROUNDS", 7);
const concurrency = int(process.env, "CTX_CONCURRENCY", 16);
const fixture = await loadFixture(opts);
if (!fixture) throw new Error(`the bench database ${opts.database} is not seeded (run bench/ab.ts once)`);

type Harness = Awaited<ReturnType<typeof contextHarness>>;
const variants: { label: string; harness: Harness }[] = [];
for (const arg of process.argv.slice(2)) {
  const [label, dir] = arg.split("=") as [string, string];
  const mod = (await import(pathToFileURL(path.resolve(dir, "bench/context-harness.ts")).href)) as { contextHarness: typeof contextHarness };
  variants.push({ label, harness: await mod.contextHarness(fixture, opts.redisUrl, opts.jwtSecret) });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  for (const kind of variants[0]!.harness.kinds) {
    for (const workers of [1, concurrency]) {
      const results = new Map<string, { cpuUs: number; wallUs: number; writes: number }[]>(variants.map((v) => [v.label, []]));
      for (const v of variants) await v.harness.measure(kind, requests / 4, workers);
      for (let r = 0; r < rounds; r++) {
        // Alternate which variant goes first.
        const order = r % 2 ? [...variants].reverse() : variants;
        for (const v of order) results.get(v.label)!.push(await v.harness.measure(kind, requests, workers));
      }
      const base = results.get(variants[0]!.label)!;
      for (const v of variants) {
        const rs = results.get(v.label)!;
        const ratio = median(rs.map((x, i) => x.cpuUs / base[i]!.cpuUs - 1)) * 100;
        console.log(
          `${kind.padEnd(7)} x${String(workers).padStart(2)} ${v.label.padEnd(6)}: CPU ${median(rs.map((x) => x.cpuUs)).toFixed(0)} us/context (${ratio >= 0 ? "+" : ""}${ratio.toFixed(1)}% vs ${variants[0]!.label}), wall ${median(rs.map((x) => x.wallUs)).toFixed(0)} us, ${median(rs.map((x) => x.writes)).toFixed(2)} Redis writes/context`,
        );
      }
    }
  }
} finally {
  for (const v of variants) await v.harness.close();
}
