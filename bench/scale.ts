import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { post, runLoad, percentile, type RequestGenerator } from "./load.ts";
import { benchOptionsOrExit, int, type BenchOptions } from "./options.ts";
import { floorEnv, ROOT, serverEnv, startChild, waitReady, type Child } from "./processes.ts";
import { median } from "./report.ts";
import { dashboardGen, signTokens } from "./scenarios.ts";
import { clearStaleDirectoryCache, loadFixture, seedBenchDatabase, tenantSlug, type Fixture } from "./seed.ts";

/**
 * npm run bench:scale (issue 15 point 7): the scale table. For each tenant
 * count of BENCH_SCALE (default 100,1000,10000) the bench database is seeded
 * with that many tenants (bench/seed.ts: 20 projects x 50 deployments, 10
 * workflows, 5 members each: 10M deployments at 10,000), the server and the
 * floor are started on it, and:
 *
 *  - the dashboard and the floor's dashboard run at BENCH_CONNECTIONS (32)
 *    for BENCH_RUNS x (BENCH_WARMUP + BENCH_DURATION), over the SAME 99
 *    tenants at every scale (bench-001 ... bench-099): what the other
 *    tenants' rows cost one tenant's dashboard. Reported: req/s as a ratio
 *    to the floor's and p95 (medians over runs);
 *  - platform.tenantUsage(first: 100) (default order, CREATED_AT DESC, and
 *    orderBy DEPLOYMENTS DESC) and platform.totals, one request at a time,
 *    BENCH_SCALE_REQUESTS (40) after 5 warm-up requests: p50 and p95.
 *
 * The load average is recorded before and after each scale (the machine may
 * be shared). Results: bench/results/<stamp>-scale.{md,json}.
 *
 * BENCH_SCALE_KEEP=1: each scale has a database of its own
 * (<BENCH_DATABASE>_<tenants>), kept and reused by the next run with it set,
 * so the 10,000-tenant seed (15 min) can be made while the machine is busy
 * and measured later on a quiet one; BENCH_SCALE_SEED_ONLY=1 seeds and stops.
 */

const log = (line: string) => process.stdout.write(`[bench:scale] ${line}\n`);

const USAGE_DEFAULT = `query TenantUsage { platform { tenantUsage(first: 100) {
  totalCount edges { node { tenant { slug } members projects deployments workflows apiRequests deploymentsByStatus { status count } } } } } }`;
const USAGE_BY_DEPLOYMENTS = `query TenantUsageByDeployments { platform { tenantUsage(first: 100, orderBy: { field: DEPLOYMENTS, direction: DESC }) {
  edges { node { tenant { slug } members projects deployments workflows apiRequests deploymentsByStatus { status count } } } } } }`;
const TOTALS = `query Totals { platform { totals { tenants tenantsByPlan { plan count } tenantsByStatus { status count } members projects deployments apiRequests } } }`;

interface Latency {
  p50: number;
  p95: number;
}

interface ScaleRow {
  tenants: number;
  deployments: number;
  seedMs: number;
  loadBefore: string;
  loadAfter: string;
  dashboard: { ratio: number; p95: number; rps: number; floorRps: number; floorP95: number; runs: { rps: number; p95: number; floorRps: number }[] };
  usage: Latency;
  usageByDeployments: Latency;
  totals: Latency;
}

const loadAverage = () => os.loadavg().map((l) => l.toFixed(2)).join(" ");

/** `n` requests one at a time after 5 warm-up ones; every answer must be free of errors. */
async function latency(url: string, gen: RequestGenerator, n: number): Promise<Latency> {
  const ms: number[] = [];
  for (let i = -5; i < n; i++) {
    const t0 = performance.now();
    const r = await post(url, gen(i));
    const elapsed = performance.now() - t0;
    if (r.status !== 200 || !r.json?.data || r.json.errors) throw new Error(`HTTP ${r.status}: ${r.text.slice(0, 300)}`);
    if (i >= 0) ms.push(elapsed);
  }
  ms.sort((a, b) => a - b);
  return { p50: percentile(ms, 50), p95: percentile(ms, 95) };
}

const KEEP = process.env.BENCH_SCALE_KEEP === "1" || process.env.BENCH_SCALE_SEED_ONLY === "1";

/** A kept database seeded earlier with as many tenants (seed time 0), or a new seed. */
async function seededFixture(scaled: BenchOptions): Promise<Fixture> {
  const kept = KEEP ? await loadFixture(scaled) : undefined;
  if (!kept) return seedBenchDatabase(scaled, log);
  log(`${scaled.database}: reusing its ${scaled.tenants} tenants (seeded earlier)`);
  const db = new pg.Client({ connectionString: kept.url });
  await db.connect();
  try {
    const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM deployments");
    return { ...kept, counts: { ...kept.counts, deployments: Number(rows[0]!.n) } };
  } finally {
    await db.end();
  }
}

async function measure(opts: BenchOptions, tenants: number, requests: number): Promise<ScaleRow> {
  const loadBefore = loadAverage();
  const scaled = { ...opts, tenants, ...(KEEP ? { database: `${opts.database}_${tenants}` } : {}) };
  const fixture = await seededFixture(scaled);
  await clearStaleDirectoryCache(opts.redisUrl);
  // The dashboard's tenants: the same 99 at every scale.
  const same = new Set(Array.from({ length: 99 }, (_, i) => tenantSlug(i + 1)));
  const tokens = await signTokens({ ...fixture, tenants: fixture.tenants.filter((t) => same.has(t.slug)) }, opts.jwtSecret);
  const children: Child[] = [];
  try {
    const server = startChild("server", "src/server.ts", opts.port, serverEnv(scaled, fixture.url));
    const floor = startChild("floor", "bench/floor-server.ts", opts.port + 1, floorEnv(scaled, fixture.url));
    children.push(server, floor);
    await Promise.all([waitReady(server), waitReady(floor)]);
    const serverUrl = `http://127.0.0.1:${opts.port}`;
    const floorUrl = `http://127.0.0.1:${opts.port + 1}`;
    const dash = dashboardGen(tokens);
    const platform = (query: string): RequestGenerator => () => ({ body: JSON.stringify({ query }), token: tokens.admin });

    const runs: { rps: number; p95: number; floorRps: number; floorP95: number }[] = [];
    for (let r = 0; r < opts.runs; r++) {
      const results = [];
      for (const url of [floorUrl, serverUrl]) {
        if (opts.warmupS > 0) await runLoad({ url, connections: opts.connections, durationS: opts.warmupS, gen: dash });
        const res = await runLoad({ url, connections: opts.connections, durationS: opts.durationS, gen: dash });
        if (res.errors || res.non2xx || res.gqlErrors) throw new Error(`dashboard load on ${url}: ${JSON.stringify(res.statusCodes)}, ${res.gqlErrors} GraphQL errors`);
        results.push(res);
      }
      const [f, s] = results;
      runs.push({ rps: s!.rps, p95: s!.p95, floorRps: f!.rps, floorP95: f!.p95 });
      log(`${tenants} tenants, run ${r + 1}: dashboard ${s!.rps.toFixed(0)} req/s p95 ${s!.p95} ms, floor ${f!.rps.toFixed(0)} req/s`);
    }
    const usage = await latency(serverUrl, platform(USAGE_DEFAULT), requests);
    const usageByDeployments = await latency(serverUrl, platform(USAGE_BY_DEPLOYMENTS), requests);
    const totals = await latency(serverUrl, platform(TOTALS), requests);
    const row: ScaleRow = {
      tenants,
      deployments: fixture.counts.deployments ?? 0,
      seedMs: fixture.seedMs,
      loadBefore,
      loadAfter: loadAverage(),
      dashboard: {
        ratio: median(runs.map((x) => x.rps / x.floorRps)),
        p95: median(runs.map((x) => x.p95)),
        rps: median(runs.map((x) => x.rps)),
        floorRps: median(runs.map((x) => x.floorRps)),
        floorP95: median(runs.map((x) => x.floorP95)),
        runs,
      },
      usage,
      usageByDeployments,
      totals,
    };
    log(`${tenants} tenants: ${JSON.stringify(row)}`);
    return row;
  } finally {
    await Promise.allSettled(children.map((c) => c.stop()));
  }
}

const fmt = (n: number, digits = 1) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

function report(rows: ScaleRow[]): string {
  const base = rows.find((r) => r.tenants === 100) ?? rows[0]!;
  const lines = [
    "| tenants | deployments | seed | dashboard ratio to floor | dashboard p95 | vs first row (ratio / p95) | tenantUsage(first: 100) p50 / p95 | tenantUsage by DEPLOYMENTS p50 / p95 | totals p50 / p95 | load average before -> after |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.tenants.toLocaleString("en-US")} | ${r.deployments.toLocaleString("en-US")} | ${fmt(r.seedMs / 1000, 0)} s | ${fmt(r.dashboard.ratio, 2)} (${fmt(r.dashboard.rps, 0)} / ${fmt(r.dashboard.floorRps, 0)} req/s) | ${fmt(r.dashboard.p95, 0)} ms | ${fmt((100 * (r.dashboard.ratio - base.dashboard.ratio)) / base.dashboard.ratio, 0)}% / ${fmt((100 * (r.dashboard.p95 - base.dashboard.p95)) / base.dashboard.p95, 0)}% | ${fmt(r.usage.p50)} / ${fmt(r.usage.p95)} ms | ${fmt(r.usageByDeployments.p50)} / ${fmt(r.usageByDeployments.p95)} ms | ${fmt(r.totals.p50)} / ${fmt(r.totals.p95)} ms | ${r.loadBefore} -> ${r.loadAfter} |`,
    ),
  ];
  const top = rows[rows.length - 1]!;
  const checks = [
    `- tenantUsage(first: 100) p50 < 100 ms at ${top.tenants.toLocaleString("en-US")} tenants: ${top.usage.p50 < 100 && top.usageByDeployments.p50 < 100 ? "holds" : "FAILS"} (${fmt(top.usage.p50)} ms default order, ${fmt(top.usageByDeployments.p50)} ms by DEPLOYMENTS)`,
    `- totals p50 < 100 ms at ${top.tenants.toLocaleString("en-US")} tenants: ${top.totals.p50 < 100 ? "holds" : "FAILS"} (${fmt(top.totals.p50)} ms)`,
    `- dashboard within 20% of the ${base.tenants}-tenant figures: ${rows.every((r) => r.dashboard.ratio >= 0.8 * base.dashboard.ratio && r.dashboard.p95 <= 1.2 * base.dashboard.p95) ? "holds" : "FAILS"} (ratio and p95 per row above)`,
  ];
  return [...lines, "", ...checks].join("\n");
}

async function main() {
  const opts = benchOptionsOrExit();
  const scales = (process.env.BENCH_SCALE ?? "100,1000,10000").split(",").map((s) => Number(s.trim()));
  if (scales.some((n) => !Number.isInteger(n) || n < 100)) throw new Error("BENCH_SCALE: comma-separated tenant counts of 100 or more");
  const requests = int(process.env, "BENCH_SCALE_REQUESTS", 40);
  const startedAt = new Date();
  log(`scales ${scales.join(", ")}; runs=${opts.runs} duration=${opts.durationS}s warm-up=${opts.warmupS}s connections=${opts.connections}; load average ${loadAverage()}`);
  const rows: ScaleRow[] = [];
  if (process.env.BENCH_SCALE_SEED_ONLY === "1") {
    for (const n of scales) await seededFixture({ ...opts, tenants: n, database: `${opts.database}_${n}` });
    return;
  }
  for (const n of scales) rows.push(await measure(opts, n, requests));
  const text = report(rows);
  process.stdout.write(`\n${text}\n`);
  const stamp = startedAt.toISOString().replace(/[:]/g, "-").replace(/\..*$/, "");
  const dir = path.join(ROOT, "bench", "results");
  await mkdir(dir, { recursive: true });
  const cpus = os.cpus();
  const machine = `${cpus.length} x ${cpus[0]?.model ?? "?"}, ${Math.round(os.totalmem() / 2 ** 30)} GB, node ${process.version}`;
  const header = [
    `# Scale table (${startedAt.toISOString()})`,
    "",
    `Command: \`${process.env.BENCH_COMMAND ?? "npm run bench:scale"}\`; runs=${opts.runs}, duration=${opts.durationS} s, warm-up=${opts.warmupS} s, ${opts.connections} connections, ${requests} sequential platform requests per figure. Machine: ${machine}; shared with other sessions' tests (load average per row).`,
    "",
    "The dashboard rotates over the same 99 tenants (bench-001 ... bench-099) at every scale; the ratio is the server's req/s over the floor's in the same run. tenantUsage and totals: one request at a time, platform admin, no range (the counters of tenant_stats).",
    "",
    "",
  ];
  await writeFile(path.join(dir, `${stamp}-scale.md`), `${header.join("\n")}${text}\n`);
  await writeFile(path.join(dir, `${stamp}-scale.json`), JSON.stringify({ startedAt, machine, options: { ...opts, databaseUrl: undefined, redisUrl: undefined, jwtSecret: undefined }, requests, rows }, null, 2));
  log(`wrote bench/results/${stamp}-scale.md`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
