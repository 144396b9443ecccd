import { startLiveLoad } from "./live.ts";
import { benchOptionsOrExit } from "./options.ts";
import { serverEnv, spawnChild, startScriptFlags, waitReady } from "./processes.ts";
import { signTokens, withoutTenant } from "./scenarios.ts";
import { clearStaleDirectoryCache, loadFixture, seedBenchDatabase } from "./seed.ts";
import fs from "node:fs";

/**
 * What an open stream keeps on the server's heap (docs/live-updates.md,
 * "Ninth round, second part"): the server (dist, after npm run build; or BENCH_SERVER=tsx) with the memory
 * probe preloaded, a round of BENCH_LIVE_STREAMS streams opened and closed
 * (warm code paths), a heap snapshot, the same number of idle streams
 * opened, a second snapshot (both next to PROBE_OUT). Then:
 *
 *   DATABASE_URL=... REDIS_URL=... PROBE_OUT=/tmp/heap/probe.log npx tsx bench/stream-heap.ts
 *   node --max-old-space-size=4000 bench/heap-diff.mjs <before> <after> 1000
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const opts = benchOptionsOrExit();
let fixture = await loadFixture(opts);
if (!fixture) fixture = await seedBenchDatabase(opts, console.log);
await clearStaleDirectoryCache(opts.redisUrl);
const tokens = withoutTenant(await signTokens(fixture, opts.jwtSecret), fixture.noisy.slug);
const out = process.env.PROBE_OUT ?? "/tmp/heap/probe.log";
const env = { ...serverEnv(opts, fixture.url), REDIS_KEY_PREFIX: "streamheap:", PROBE_OUT: out, PROBE_LABEL: "s" };
const child = spawnChild("server", [...startScriptFlags(process.cwd()), "--import", process.env.PROBE ?? "./bench/memory-probe.mjs", ...(process.env.BENCH_SERVER === "tsx" ? ["--import", "tsx", "src/server.ts"] : ["dist/server.js"])], process.cwd(), opts.port, env);
await waitReady(child, 120_000);
const snap = async () => {
  const before = fs.existsSync(out) ? fs.readFileSync(out, "utf8").length : 0;
  child.proc.kill("SIGURG");
  for (;;) { await sleep(500); const t = fs.existsSync(out) ? fs.readFileSync(out, "utf8") : ""; if (t.length > before) return t.slice(before).trim(); }
};
// Warm the streams' code paths: open and close a round first.
const warm = await startLiveLoad(`http://127.0.0.1:${opts.port}`, tokens, { streams: opts.liveStreams ?? 1000, mutationsPerS: 0 }, { REDIS_KEY_PREFIX: "streamheap:" });
await sleep(3000);
await warm.stop();
await sleep(3000);
console.log("before", await snap());
const live = await startLiveLoad(`http://127.0.0.1:${opts.port}`, tokens, { streams: opts.liveStreams ?? 1000, mutationsPerS: 0 }, { REDIS_KEY_PREFIX: "streamheap:" });
await sleep(5000);
console.log("after", await snap());
await live.stop();
await child.stop();
process.exit(0);
