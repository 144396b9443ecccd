import { mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { eldLine, windowFigures, type WindowFigures } from "./live-eld.ts";
import { startLiveLoad } from "./live.ts";
import { benchOptionsOrExit, runMain } from "./options.ts";
import { cpuMs, serverEnv, spawnChild, startScriptFlags, waitReady, type Child } from "./processes.ts";
import { signTokens, withoutTenant } from "./scenarios.ts";
import { clearStaleDirectoryCache, loadFixture, seedBenchDatabase } from "./seed.ts";

/**
 * What the open streams themselves cost the server (docs/live-updates.md,
 * "Fifth round"): the live load alone (no dashboard) in four windows of
 * BENCH_DURATION seconds per round, their order reversed every other round:
 * the writer alone (BENCH_LIVE_MUTATIONS createDeployment/s), the writer
 * with BENCH_LIVE_STREAMS streams, the streams idle (no writer), nothing.
 * The streams' own CPU is writer+streams minus writer, the idle streams'
 * (keep-alives, pings, leases, re-checks) idle minus nothing, and what a
 * delivery costs beyond them the rest divided by the deliveries.
 *
 *   DATABASE_URL=... REDIS_URL=... npx tsx bench/live-cost.ts "base=/work/wt-a" "after=/work/wt-b"
 *
 * Each variant is a checkout, its src/server.ts through tsx with npm
 * start's V8 flags (as bench/ab.ts), on port BENCH_PORT+10+i, its Redis
 * keys and topics under a prefix of its own. All variants are loaded at
 * the same time, each by a live load of its own (the same streams and
 * writer): whatever else the machine does in a window, every variant lives
 * through it alike, so their figures compare window by window. Without
 * arguments: this checkout alone. A window opens its streams, waits
 * BENCH_WARMUP seconds (at least 3), then measures; use a duration that is
 * a multiple of the 12 s keep-alive period (24 s).
 *
 * BENCH_LIVE_ELD=1 also preloads bench/live-eld.ts into every server: per
 * window, its event-loop delay (p99, max), GC pauses, user/system CPU and
 * WebSocket ping bursts (docs/live-updates.md, "Sixth round").
 */

const log = (line: string) => process.stdout.write(`[live-cost] ${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const opts = benchOptionsOrExit();
  const args = process.argv.slice(2);
  const variants = (args.length ? args : [`this=${process.cwd()}`]).map((a) => {
    const eq = a.indexOf("=");
    if (eq < 1) throw new Error(`variant "${a}": expected label=dir`);
    return { label: a.slice(0, eq), dir: a.slice(eq + 1) };
  });
  let fixture = await loadFixture(opts);
  if (!fixture) fixture = await seedBenchDatabase(opts, log);
  await clearStaleDirectoryCache(opts.redisUrl);
  const tokens = withoutTenant(await signTokens(fixture, opts.jwtSecret), fixture.noisy.slug);
  const streams = opts.liveStreams ?? 1000;
  const mutationsPerS = opts.liveMutationsPerS ?? 10;
  const settleMs = Math.max(3, opts.warmupS) * 1000;

  const eldDir = process.env.BENCH_LIVE_ELD === "1" ? path.join(os.tmpdir(), `live-eld-${new Date().toISOString().replace(/[:.]/g, "-")}`) : null;
  if (eldDir) mkdirSync(eldDir, { recursive: true });
  const servers: { label: string; child: Child; prefix: string; eldFile: string }[] = [];
  try {
    for (const [i, v] of variants.entries()) {
      // Each variant's keys and topics under a prefix of its own: its stream slots (SUBSCRIPTIONS), rate limits and events apart.
      const env = { ...serverEnv(opts, fixture.url), REDIS_KEY_PREFIX: `${opts.redisKeyPrefix ?? ""}livecost${i}:` };
      const probe = eldDir ? ["--import", path.join(import.meta.dirname, "live-eld.ts")] : [];
      const eldFile = eldDir ? path.join(eldDir, `${v.label}.jsonl`) : "";
      const child = spawnChild(v.label, [...startScriptFlags(v.dir), "--import", "tsx", ...probe, "src/server.ts"], v.dir, opts.port + 10 + i, eldFile ? { ...env, LIVE_ELD_FILE: eldFile } : env);
      servers.push({ label: v.label, child, prefix: env.REDIS_KEY_PREFIX, eldFile });
    }
    await Promise.all(servers.map((s) => waitReady(s.child, 120_000)));
    /** One window: every variant under the live load (`n` streams, `rate` mutations/s) at once; each server's CPU % of a core. */
    const window = async (n: number, rate: number) => {
      const lives = await Promise.all(servers.map((s) => startLiveLoad(`http://127.0.0.1:${s.child.port}`, tokens, { streams: n, mutationsPerS: rate }, { REDIS_KEY_PREFIX: s.prefix })));
      await sleep(settleMs);
      const load = os.loadavg()[0]!;
      const c0 = servers.map((s) => cpuMs(s.child.proc.pid!) ?? NaN);
      const from = Date.now();
      for (const l of lives) l.measure();
      await sleep(opts.durationS * 1000);
      const cpuPct = servers.map((s, i) => ((cpuMs(s.child.proc.pid!) ?? NaN) - c0[i]!) / opts.durationS / 10);
      const to = Date.now();
      const figures = await Promise.all(lives.map((l) => l.stop()));
      // The probe's seconds of the measured window (its line of the last second is written by then).
      await sleep(eldDir ? 1100 : 0);
      const eld = servers.map((s) => (s.eldFile ? windowFigures(s.eldFile, from, to) : null));
      return { cpuPct, figures, load, eld };
    };
    // Warm-up: every server serves the writer and the streams once, unmeasured.
    await window(streams, mutationsPerS);
    log(`warmed up; ${variants.length} variant(s) at once, ${streams} streams, ${mutationsPerS} mutations/s, ${opts.runs} rounds x 4 x ${opts.durationS} s`);
    // The four windows of a round: the writer alone, writer + streams, the streams idle, nothing.
    const kinds = [
      { key: "writer", n: 0, rate: mutationsPerS },
      { key: "live", n: streams, rate: mutationsPerS },
      { key: "idle", n: streams, rate: 0 },
      { key: "none", n: 0, rate: 0 },
    ] as const;
    type Row = Record<(typeof kinds)[number]["key"] | "own" | "idleOwn" | "perDeliveryUs", number[]>;
    const rows: Row[] = servers.map(() => ({ writer: [], live: [], idle: [], none: [], own: [], idleOwn: [], perDeliveryUs: [] }));
    const eld = servers.map(() => ({ writer: [], live: [], idle: [], none: [] }) as Record<(typeof kinds)[number]["key"], (WindowFigures | null)[]>);
    for (let round = 1; round <= opts.runs; round++) {
      const order = round % 2 ? kinds : [...kinds].reverse();
      const w = {} as Record<(typeof kinds)[number]["key"], Awaited<ReturnType<typeof window>>>;
      for (const k of order) w[k.key] = await window(k.n, k.rate);
      const parts = servers.map((s, i) => {
        const r = rows[i]!;
        for (const k of kinds) r[k.key].push(w[k.key].cpuPct[i]!);
        const own = w.live.cpuPct[i]! - w.writer.cpuPct[i]!;
        const idleOwn = w.idle.cpuPct[i]! - w.none.cpuPct[i]!;
        const f = w.live.figures[i]!;
        // What a delivery costs beyond the idle streams: CPU ms (of the window) per delivery, in microseconds.
        const perDeliveryUs = ((own - idleOwn) * 10 * opts.durationS * 1000) / Math.max(1, f.delivered);
        r.own.push(own);
        r.idleOwn.push(idleOwn);
        r.perDeliveryUs.push(perDeliveryUs);
        return `${s.label} writer ${w.writer.cpuPct[i]!.toFixed(1)}% live ${w.live.cpuPct[i]!.toFixed(1)}% idle ${w.idle.cpuPct[i]!.toFixed(1)}% none ${w.none.cpuPct[i]!.toFixed(1)}%: streams ${own.toFixed(1)} points, idle streams ${idleOwn.toFixed(1)}, ${perDeliveryUs.toFixed(0)} us/delivery (${f.delivered}/${f.expected} deliveries, p95 ${f.p95.toFixed(0)} ms)`;
      });
      log(`round ${round}/${opts.runs} (load ${order.map((k) => w[k.key].load.toFixed(1)).join("/")}): ${parts.join(" | ")}`);
      if (eldDir) {
        for (const [i, s] of servers.entries()) {
          for (const k of kinds) {
            eld[i]![k.key].push(w[k.key].eld[i]!);
            log(`  ${s.label} ${k.key}: ${eldLine(w[k.key].eld[i]!)}`);
          }
        }
      }
    }
    const list = (xs: number[], d = 1) => xs.map((x) => x.toFixed(d)).join(", ");
    for (const [i, s] of servers.entries()) {
      const r = rows[i]!;
      log(`${s.label}: server CPU writer ${median(r.writer).toFixed(1)}%, writer + streams ${median(r.live).toFixed(1)}%, streams idle ${median(r.idle).toFixed(1)}%, nothing ${median(r.none).toFixed(1)}%; the streams' own ${median(r.own).toFixed(1)} points (rounds ${list(r.own)}), idle ${median(r.idleOwn).toFixed(1)} (rounds ${list(r.idleOwn)}), ${median(r.perDeliveryUs).toFixed(0)} us per delivery beyond idle (rounds ${list(r.perDeliveryUs, 0)})`);
    }
    if (eldDir) {
      const of = (xs: (WindowFigures | null)[], k: keyof WindowFigures) => median(xs.filter((x): x is WindowFigures => !!x).map((x) => x[k]));
      for (const [i, s] of servers.entries()) {
        for (const k of kinds) {
          const xs = eld[i]![k.key];
          log(`${s.label} ${k.key} (medians of rounds): loop delay p99 ${of(xs, "p99").toFixed(1)} ms, max ${of(xs, "max").toFixed(0)} ms, ${of(xs, "over50")} s over 50 ms; mark-compacts ${of(xs, "majorN")} per window (${of(xs, "majorMs").toFixed(0)} ms), scavenges ${of(xs, "minorMsPerS").toFixed(1)} ms/s; user ${of(xs, "userPct").toFixed(1)}% sys ${of(xs, "sysPct").toFixed(1)}%; largest ping burst ${of(xs, "pingBurst")}`);
        }
      }
      log(`probe lines: ${eldDir}`);
    }
    for (const [i, s] of servers.entries()) {
      if (i === 0) continue;
      const d = (key: keyof Row, k = 1) => {
        const xs = rows[i]![key].map((x, j) => x - rows[0]![key][j]!);
        return `${median(xs).toFixed(k)} (rounds ${list(xs, k)})`;
      };
      log(`${s.label} - ${servers[0]!.label}, same windows: the streams' own ${d("own")} points, idle streams ${d("idleOwn")} points, per delivery ${d("perDeliveryUs", 0)} us`);
    }
  } finally {
    await Promise.allSettled(servers.map((s) => s.child.stop()));
  }
}

runMain(main);
