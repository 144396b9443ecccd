import { Redis } from "ioredis";
import { signDevToken } from "../src/tenancy/tokens.ts";
import { post, requestHeaders, type GeneratedRequest } from "./load.ts";
import { median } from "./report.ts";
import { benchOptionsOrExit, runMain } from "./options.ts";
import { cpuMs, serverEnv, startChild, waitReady } from "./processes.ts";
import { dashboardQuery } from "./scenarios.ts";
import { clearStaleDirectoryCache, loadFixture, seedBenchDatabase } from "./seed.ts";

/**
 * What the response cache costs and saves per request (issue 14's closing
 * figures), without a concurrent load:
 *
 *   DATABASE_URL=... REDIS_URL=... BENCH_PORT=4300 BENCH_DATABASE=... npx tsx bench/cache-cost.ts
 *
 * Reuses the bench database (seeds it when absent), starts the server, and
 * sends the dashboard one request at a time to one (tenant, role) pair after
 * another, in three phases over the same pairs: MISS (the tenant's entries
 * deleted first), BYPASS (`Cache-Control: no-cache`: the uncached request)
 * and HIT. Each phase: the median latency seen by the client and the
 * server's CPU time per request. MISS - BYPASS is what a miss adds to an
 * uncached request; HIT is the cost of an answer from the cache.
 */

const log = (line: string) => process.stdout.write(`[cache-cost] ${line}\n`);

async function main() {
  const opts = benchOptionsOrExit();
  const fixture = (await loadFixture(opts)) ?? (await seedBenchDatabase(opts, log));
  await clearStaleDirectoryCache(opts.redisUrl);
  const rounds = Number(process.env.CACHE_COST_ROUNDS ?? 3);
  const body = JSON.stringify({ query: dashboardQuery() });
  // One member per role of each tenant but the noisy one (its real rate limit).
  const pairs: GeneratedRequest[] = [];
  for (const t of fixture.tenants.filter((x) => x !== fixture.noisy)) {
    const seen = new Set<string>();
    for (const m of t.members) {
      if (seen.has(m.role)) continue;
      seen.add(m.role);
      pairs.push({ body, token: await signDevToken({ secret: opts.jwtSecret, sub: m.email, tenant: t.slug, ttl: "1h" }) });
    }
  }
  // CACHE_COST_PROFILE=<dir>: the server writes a V8 CPU profile there (bench/cpuprofile-summary.ts reads it).
  const profileDir = process.env.CACHE_COST_PROFILE;
  const server = startChild("server", "src/server.ts", opts.port, serverEnv(opts, fixture.url), profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []);
  await waitReady(server);
  const url = `http://127.0.0.1:${opts.port}`;
  const redis = new Redis(opts.redisUrl);
  const clear = async () => {
    for (const t of fixture.tenants) {
      // KEYS answers whole names (prefix included); DEL on this unprefixed client takes them as they are.
      const keys = await redis.keys(`${opts.redisKeyPrefix ?? ""}t:{${t.id}}:rc:*`);
      if (keys.length) await redis.del(...keys);
    }
  };
  const phase = async (name: string, cache: boolean) => {
    const latencies: number[] = [];
    const seen: Record<string, number> = {};
    const cpu0 = cpuMs(server.proc.pid!) ?? NaN;
    for (const p of pairs) {
      const t0 = performance.now();
      const res = await fetch(`${url}/graphql`, { method: "POST", headers: requestHeaders({ ...p, cache }), body: p.body });
      await res.arrayBuffer();
      latencies.push(performance.now() - t0);
      const x = res.headers.get("x-cache") ?? "none";
      seen[x] = (seen[x] ?? 0) + 1;
    }
    const cpu = ((cpuMs(server.proc.pid!) ?? NaN) - cpu0) / pairs.length;
    return { name, p50: median(latencies), cpu, seen };
  };
  try {
    // Warm: JIT, pools, directory.
    for (let i = 0; i < 2; i++) for (const p of pairs) await post(url, p);
    const results: Awaited<ReturnType<typeof phase>>[] = [];
    // CACHE_COST_PHASES: a subset (e.g. HIT, for a profile of hits alone).
    const phases = (process.env.CACHE_COST_PHASES ?? "MISS,BYPASS,HIT").split(",");
    for (let r = 0; r < rounds; r++) {
      await clear();
      if (phases.includes("MISS")) results.push(await phase("MISS", true));
      else if (phases.includes("HIT")) for (const p of pairs) await post(url, { ...p, cache: true });
      if (phases.includes("BYPASS")) results.push(await phase("BYPASS", false));
      if (phases.includes("HIT")) results.push(await phase("HIT", true));
    }
    if (phases.length < 3) {
      for (const r of results) log(`${r.name} p50 ${r.p50.toFixed(2)} ms, server CPU ${r.cpu.toFixed(2)} ms/request`);
      return;
    }
    const summary = ["MISS", "BYPASS", "HIT"].map((name) => {
      const rs = results.filter((x) => x.name === name);
      return { name, p50: median(rs.map((x) => x.p50)), cpu: median(rs.map((x) => x.cpu)), seen: rs[rs.length - 1]!.seen };
    });
    for (const s of summary) log(`${s.name.padEnd(6)} p50 ${s.p50.toFixed(2)} ms, server CPU ${s.cpu.toFixed(2)} ms/request, X-Cache ${JSON.stringify(s.seen)}`);
    const [miss, bypass, hit] = summary;
    log(
      `${pairs.length} (tenant, role) pairs, ${rounds} rounds, medians: a miss adds ${(miss!.p50 - bypass!.p50).toFixed(2)} ms (p50) and ${(miss!.cpu - bypass!.cpu).toFixed(2)} ms CPU to an uncached request; a hit costs ${(hit!.p50 / bypass!.p50).toFixed(2)}x its latency and ${(hit!.cpu / bypass!.cpu).toFixed(2)}x its CPU`,
    );
  } finally {
    redis.disconnect();
    await server.stop();
  }
}

runMain(main);
