import os from "node:os";
import pg from "pg";
import { Redis } from "ioredis";
import { liveTopic } from "../src/infra/live-events.ts";
import { startLiveLoad } from "./live.ts";
import { benchOptionsOrExit, runMain } from "./options.ts";
import { cpuMs, serverEnv, spawnChild, startScriptFlags, waitReady, type Child } from "./processes.ts";
import { signTokens, withoutTenant } from "./scenarios.ts";
import { clearStaleDirectoryCache, loadFixture, seedBenchDatabase } from "./seed.ts";

/**
 * The server's CPU per delivery without a writer (docs/live-updates.md,
 * "Eighth round"): bench/live-cost.ts measures the streams as the
 * difference of two windows that both carry the writer's 10 mutations/s,
 * whose CPU (10-13% of a core) moves more between windows on a shared
 * machine than the streams cost. Here the events are published straight
 * to the tenants' Redis topics (an existing deployment each, as a commit
 * would announce it): the server reads and delivers them exactly as after
 * a mutation, and nothing else runs.
 *
 *   DATABASE_URL=... REDIS_URL=... npx tsx bench/live-fanout.ts "base=/work/wt-a" "after=/work/wt-b"
 *
 * Every variant at once (as live-cost: its own port, Redis prefix and
 * niced stream clients, BENCH_LIVE_STREAMS streams), then BENCH_RUNS rounds
 * of two BENCH_DURATION s windows, their order alternating: BENCH_LIVE_MUTATIONS
 * events/s (round-robin over the tenants with streams, the same events for
 * every variant), and nothing (the idle streams). CPU per delivery = the
 * difference of the two windows' CPU / the deliveries the events made (each
 * event goes to every open stream of its tenant: the stream slots count them).
 */

const log = (line: string) => process.stdout.write(`[live-fanout] ${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const opts = benchOptionsOrExit();
  const variants = (process.argv.slice(2).length ? process.argv.slice(2) : [`this=${process.cwd()}`]).map((a) => ({ label: a.slice(0, a.indexOf("=")), dir: a.slice(a.indexOf("=") + 1) }));
  let fixture = await loadFixture(opts);
  if (!fixture) fixture = await seedBenchDatabase(opts, log);
  await clearStaleDirectoryCache(opts.redisUrl);
  const tokens = withoutTenant(await signTokens(fixture, opts.jwtSecret), fixture.noisy.slug);
  const streams = opts.liveStreams ?? 1000;
  const rate = opts.liveMutationsPerS ?? 10;
  const db = new pg.Client({ connectionString: fixture.url });
  await db.connect();
  // One deployment per tenant: the node each event names.
  const nodes = (await db.query<{ tenant_id: string; id: string; project_id: string }>("SELECT DISTINCT ON (tenant_id) tenant_id, id, project_id FROM deployments ORDER BY tenant_id, created_at")).rows;
  await db.end();
  const redis = new Redis(opts.redisUrl);
  const servers: { label: string; child: Child; prefix: string }[] = [];
  try {
    for (const [i, v] of variants.entries()) {
      const env = { ...serverEnv(opts, fixture.url), REDIS_KEY_PREFIX: `${opts.redisKeyPrefix ?? ""}livefanout${i}:` };
      // BENCH_CPU_PROF_DIR: each server writes a .cpuprofile there at exit (the log gives the rounds' times since its start).
      const prof = process.env.BENCH_CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [];
      servers.push({ label: v.label, child: spawnChild(v.label, [...prof, ...startScriptFlags(v.dir), "--import", "tsx", "src/server.ts"], v.dir, opts.port + 10 + i, env), prefix: env.REDIS_KEY_PREFIX });
    }
    const spawned = Date.now();
    await Promise.all(servers.map((s) => waitReady(s.child, 120_000)));
    const lives = await Promise.all(servers.map((s) => startLiveLoad(`http://127.0.0.1:${s.child.port}`, tokens, { streams, mutationsPerS: 0 }, { REDIS_KEY_PREFIX: s.prefix })));
    await sleep(Math.max(5, opts.warmupS) * 1000);
    /** Open streams per tenant, per server (its stream slots). */
    const open = await Promise.all(
      servers.map(async (s) => {
        const counts = await Promise.all(nodes.map((n) => redis.zcard(`${s.prefix}${liveTopic(n.tenant_id)}:streams`)));
        return new Map(nodes.map((n, i) => [n.tenant_id, counts[i]!]));
      }),
    );
    const targets = nodes.filter((n) => (open[0]!.get(n.tenant_id) ?? 0) > 0);
    log(`${variants.length} variant(s), ${open.map((m) => [...m.values()].reduce((a, b) => a + b, 0)).join("/")} streams open over ${targets.length} tenants; ${rate} events/s; ${opts.runs} rounds x 2 x ${opts.durationS} s`);
    let k = 0;
    const window = async (publish: boolean) => {
      const load = os.loadavg()[0]!;
      const c0 = servers.map((s) => cpuMs(s.child.proc.pid!) ?? NaN);
      const delivered = servers.map(() => 0);
      const end = Date.now() + opts.durationS * 1000;
      while (Date.now() < end) {
        if (publish) {
          const n = targets[k++ % targets.length]!;
          const message = JSON.stringify({ type: "Deployment", id: n.id, projectId: n.project_id, at: Date.now() });
          await Promise.all(servers.map((s) => redis.publish(`${s.prefix}${liveTopic(n.tenant_id)}`, message)));
          servers.forEach((_, i) => (delivered[i]! += open[i]!.get(n.tenant_id) ?? 0));
        }
        await sleep(1000 / rate);
      }
      // The last events' deliveries, then the CPU.
      await sleep(publish ? 1000 : 1000);
      const cpu = servers.map((s, i) => (cpuMs(s.child.proc.pid!) ?? NaN) - c0[i]!);
      return { cpu, delivered, load };
    };
    const perDelivery: number[][] = servers.map(() => []);
    const idle: number[][] = servers.map(() => []);
    for (let round = 1; round <= opts.runs; round++) {
      const first = round % 2 === 1;
      const a = await window(first);
      const b = await window(!first);
      const [busy, quiet] = first ? [a, b] : [b, a];
      const parts = servers.map((s, i) => {
        const us = ((busy.cpu[i]! - quiet.cpu[i]!) * 1000) / Math.max(1, busy.delivered[i]!);
        perDelivery[i]!.push(us);
        idle[i]!.push(quiet.cpu[i]! / (opts.durationS + 1) / 10);
        return `${s.label} ${busy.cpu[i]!.toFixed(0)} / ${quiet.cpu[i]!.toFixed(0)} ms CPU, ${busy.delivered[i]} deliveries: ${us.toFixed(0)} us/delivery`;
      });
      log(`round ${round}/${opts.runs} (ended ${((Date.now() - spawned) / 1000).toFixed(0)} s after the servers' start; load ${busy.load.toFixed(1)}/${quiet.load.toFixed(1)}): ${parts.join(" | ")}`);
    }
    const list = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(", ");
    for (const [i, s] of servers.entries()) {
      log(`${s.label}: ${median(perDelivery[i]!).toFixed(0)} us of server CPU per delivery (rounds ${list(perDelivery[i]!)}); idle streams ${median(idle[i]!).toFixed(1)}% of a core`);
    }
    for (const [i, s] of servers.entries()) {
      if (i === 0) continue;
      const d = perDelivery[i]!.map((x, j) => x - perDelivery[0]![j]!);
      const r = perDelivery[i]!.map((x, j) => x / perDelivery[0]![j]!);
      log(`${s.label} - ${servers[0]!.label}, same windows: ${median(d).toFixed(0)} us per delivery (rounds ${list(d)}), ratio ${median(r).toFixed(2)}`);
    }
    await Promise.all(lives.map((l) => l.stop()));
  } finally {
    redis.disconnect();
    await Promise.allSettled(servers.map((s) => s.child.stop()));
  }
}

runMain(main);
