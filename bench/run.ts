import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { Redis } from "ioredis";
import pg from "pg";
import { post, runLoad, type LoadResult, type RequestGenerator } from "./load.ts";
import { benchOptionsOrExit, type BenchOptions } from "./options.ts";
import { benchServer, cpuMs, floorEnv, ROOT, rssMb, sampleRss, serverEnv, startChild, waitReady, type Child } from "./processes.ts";
import {
  checksTable,
  checkTargets,
  median,
  summarize,
  table,
  type ScenarioResult,
  type ScenarioSpec,
  type StatementFigures,
} from "./report.ts";
import {
  dashboardGen,
  firstPageGen,
  mutationMixGen,
  paginationGen,
  platformGen,
  cachedDashboardGen,
  memberCount,
  readMostlyGen,
  signTokens,
  withoutTenant,
  slowQueryGen,
  toGlobalId,
  TENANT_USAGE_QUERIES,
  type Tokens,
} from "./scenarios.ts";
import { startLiveLoad, type LiveFigures, type LiveLoad } from "./live.ts";
import { pairFigures, pairLine } from "./live-pairs.ts";
import { NEIGHBOUR_SCENARIOS, neighbourLines, samplePools, seedNeighbours, type NeighbourRun, type Neighbours } from "./neighbours.ts";
import { clearStaleDirectoryCache, seedBenchDatabase, type Fixture } from "./seed.ts";
import { SqlCounter } from "./sql-counter.ts";

/**
 * npm run bench: SPEC section 9.
 *
 *   1. recreate and seed the bench database (bench/seed.ts);
 *   2. count statements per request: a server and a floor instance whose
 *      PostgreSQL connections go through a counting proxy (bench/sql-counter.ts),
 *      sent each scenario's requests one at a time (caches warm);
 *   3. load: the server and the floor (bench/floor-server.ts) as child
 *      processes, each scenario warm-up + measured run with autocannon, all
 *      scenarios once per run, R runs, medians reported;
 *   4. print the table and the target checks, write bench/results/<stamp>.{json,md}.
 */

const log = (line: string) => process.stdout.write(`[bench] ${line}\n`);
const children: Child[] = [];

interface Scenario extends ScenarioSpec {
  gen?: RequestGenerator;
  /** Sent alongside the measured load (the noisy neighbour); without a rate, closed-loop on its connections. */
  noise?: { gen: RequestGenerator; rate?: number; connections: number };
  /** Sample the server's pool gauges and the machine's CPU during the measured run (bench/neighbours.ts). */
  samplePools?: boolean;
  countAs?: string;
  /** Fill the response cache before each measured run: requests 0..n-1 of gen. */
  prefill?: { gen: RequestGenerator; n: number };
  /** Count statements on the requests of the warm pass again (cache hits), not on new ones. */
  countRepeats?: boolean;
  note?: string;
  /** Open subscription streams and a writer alongside the measured load (live updates). */
  live?: { streams: number; mutationsPerS: number };
}

/** The live load alone for `durationS` (no other load): its figures and the server's CPU (% of a core). */
async function liveAlone(live: LiveLoad, pid: number, durationS: number) {
  const cpu0 = cpuMs(pid) ?? NaN;
  await new Promise((r) => setTimeout(r, durationS * 1000));
  const cpuPct = ((cpuMs(pid) ?? NaN) - cpu0) / durationS / 10;
  return { ...(await live.take()), cpuPct };
}

async function start(name: string, script: string, port: number, env: Record<string, string>, nodeArgs: string[] = []) {
  const child = startChild(name, script, port, env, nodeArgs);
  children.push(child);
  await waitReady(child);
  return child;
}

async function stopAll() {
  await Promise.allSettled(children.splice(0).map((c) => c.stop()));
}

/**
 * After a load stops, the server still works off the requests it had
 * accepted; one request answered means the backlog is gone, so the next
 * measurement starts from an idle server.
 */
async function drain(url: string, gen: RequestGenerator) {
  await post(url, gen(0)).catch(() => undefined);
}

const hasErrors = (json: any) => !json || !json.data || (Array.isArray(json.errors) && json.errors.length > 0);
const firstError = (r: { status: number; json: any; text: string }) =>
  `HTTP ${r.status}: ${r.json?.errors?.[0]?.message ?? r.text.slice(0, 200)}${r.json?.errors?.[0]?.extensions?.code ? ` (${r.json.errors[0].extensions.code})` : ""}`;

/** Sends `n` requests of a generator one at a time; returns the first failure. */
async function sendSequential(url: string, gen: RequestGenerator, n: number, from = 0) {
  for (let i = from; i < from + n; i++) {
    const r = await post(url, gen(i));
    if (r.status !== 200 || hasErrors(r.json)) return { failed: firstError(r), at: i };
  }
  return undefined;
}

/** The generator's requests 0..n-1, over and over. */
const repeating = (gen: RequestGenerator, n: number): RequestGenerator => (i) => gen(i % n);

/** Sends requests 0..n-1 of a generator, 8 at a time (fills the response cache). */
async function prefill(url: string, gen: RequestGenerator, n: number) {
  for (let i = 0; i < n; i += 8) {
    await Promise.all(Array.from({ length: Math.min(8, n - i) }, (_, k) => post(url, gen(i + k)).catch(() => undefined)));
  }
}

async function countStatements(counter: SqlCounter, url: string, gen: RequestGenerator, n: number): Promise<StatementFigures> {
  // One pass to warm every cache (directory, DataLoader-free paths), then count.
  await sendSequential(url, gen, n);
  await new Promise((r) => setTimeout(r, 100));
  counter.reset();
  const failure = await sendSequential(url, gen, n, n);
  await new Promise((r) => setTimeout(r, 100));
  if (failure) throw new Error(failure.failed);
  const c = counter.counts;
  return {
    perRequest: c.total / n,
    messages: c.messages / n,
    data: c.byKind.data / n,
    transaction: c.byKind.transaction / n,
    settings: c.byKind.settings / n,
    platformRole: (c.byRole.tenantgraph_platform ?? 0) / n,
    top: [...c.samples.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([sql, k]) => ({ sql, perRequest: k / n })),
  };
}

function proxiedUrl(url: string, port: number) {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = String(port);
  return u.toString();
}

async function machine(opts: BenchOptions, fixtureUrl: string) {
  const db = new pg.Client({ connectionString: fixtureUrl });
  await db.connect();
  const pgVersion = (await db.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version;
  await db.end();
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 2 });
  const info = await redis.info("server");
  redis.disconnect();
  const cpus = os.cpus();
  return {
    host: os.hostname(),
    cpus: `${cpus.length} x ${cpus[0]?.model ?? "?"}`,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    postgres: pgVersion,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? "?",
    loadAverage: os.loadavg().map((l) => l.toFixed(2)).join(" "),
  };
}

async function main() {
  const opts = benchOptionsOrExit();
  const startedAt = new Date();
  log(`runs=${opts.runs} duration=${opts.durationS}s warm-up=${opts.warmupS}s connections=${opts.connections}/${opts.lowConnections}`);

  const fixture: Fixture = await seedBenchDatabase(opts, log);
  log(`cleared ${await clearStaleDirectoryCache(opts.redisUrl)} stale directory cache entries`);
  const tokens: Tokens = await signTokens(fixture, opts.jwtSecret);
  const others = new Set(fixture.tenants.filter((t) => t !== fixture.noisy).map((t) => t.slug));
  // Every scenario but the noisy neighbour's runs on the 99 others: the noisy
  // tenant keeps its real rate limit and would answer 429 to its share.
  const regular = withoutTenant(tokens, fixture.noisy.slug);
  const host = machine(opts, fixture.url);
  // The neighbour scenarios' tenants (issue 15 point 5), when any of them runs.
  const wantNeighbours = !opts.only || opts.only.some((id) => NEIGHBOUR_SCENARIOS.includes(id));
  let neighbours: Neighbours | undefined;
  if (wantNeighbours) {
    const t0 = Date.now();
    neighbours = await seedNeighbours(fixture.url, opts.bulkDeployments ?? 50_000);
    log(`seeded the neighbour tenants (3 x ${neighbours.deploymentsPerTenant} deployments) in ${Date.now() - t0} ms`);
  }
  const neighbourTokens = neighbours ? await signTokens({ ...fixture, tenants: [neighbours.free, neighbours.database, neighbours.pooled] }, opts.jwtSecret) : undefined;

  // ---- statement counting instances (each through its own proxy) ----------------------------
  const pgUrl = new URL(fixture.url);
  const upstream = [pgUrl.hostname || "127.0.0.1", Number(pgUrl.port || 5432)] as const;
  const serverCounter = new SqlCounter(...upstream);
  const floorCounter = new SqlCounter(...upstream);
  const [serverProxy, floorProxy] = await Promise.all([serverCounter.listen(), floorCounter.listen()]);
  const countServerPort = opts.port + 2;
  const countFloorPort = opts.port + 3;
  log("starting the statement-counting server and floor");
  await Promise.all([
    start("count-server", "src/server.ts", countServerPort, serverEnv(opts, proxiedUrl(fixture.url, serverProxy))),
    start("count-floor", "bench/floor-server.ts", countFloorPort, floorEnv(opts, proxiedUrl(fixture.url, floorProxy))),
  ]);
  const countServer = `http://127.0.0.1:${countServerPort}`;
  const countFloor = `http://127.0.0.1:${countFloorPort}`;

  // Same answer from both? (the floor must do the same work)
  const dash = dashboardGen(tokens, others);
  const [a, b] = await Promise.all([post(countServer, dash(0)), post(countFloor, dash(0))]);
  let shapeCheck = "identical";
  if (hasErrors(a.json)) throw new Error(`the server cannot answer the dashboard: ${firstError(a)}`);
  if (!isDeepStrictEqual(a.json, b.json)) {
    shapeCheck = "DIFFERENT (see results json)";
    log(`WARNING: the floor's dashboard differs from the server's:\n server ${a.text.slice(0, 400)}\n floor  ${b.text.slice(0, 400)}`);
  } else {
    log(`floor and server return identical dashboard JSON (${a.text.length} bytes)`);
  }

  // Second-page cursors, one per tenant.
  const cursors = new Map<string, string>();
  const first = firstPageGen(tokens);
  for (let i = 0; i < tokens.members.length; i++) {
    const r = await post(countServer, first(i));
    const cursor = r.json?.data?.deployments?.pageInfo?.endCursor;
    if (!cursor) throw new Error(`no cursor for ${tokens.members[i]![0]!.tenant.slug}: ${firstError(r)}`);
    cursors.set(tokens.members[i]![0]!.tenant.slug, cursor);
  }

  // platform.tenantUsage may not exist yet: find a form the schema accepts.
  let usageQuery: string | undefined;
  let usageNote = "";
  for (const q of TENANT_USAGE_QUERIES) {
    const r = await post(countServer, platformGen(tokens, q)(0));
    if (!hasErrors(r.json)) {
      usageQuery = q;
      break;
    }
    usageNote = firstError(r);
  }
  if (!usageQuery) log(`platform.tenantUsage unavailable, reported as n/a: ${usageNote}`);

  // bench-x-db to its own database (the move of issue 15 point 3, through the API).
  let moveNote = "";
  if (neighbours) {
    const r = await post(countServer, {
      token: tokens.admin,
      body: JSON.stringify({
        query: `mutation Move($input: MoveTenantInput!) { moveTenant(input: $input) { movedRows durationMs tenant { placement } } }`,
        variables: { input: { tenantId: toGlobalId("Tenant", neighbours.database.id), placement: "DATABASE" } },
      }),
    });
    const moved = r.json?.data?.moveTenant;
    if (!moved || hasErrors(r.json)) throw new Error(`moving ${neighbours.database.slug} to DATABASE failed: ${firstError(r)}`);
    moveNote = `${neighbours.database.slug} moved to ${moved.tenant.placement}: ${moved.movedRows} rows in ${moved.durationMs} ms`;
    log(moveNote);
  }

  const noiseRate = Math.round((10 * opts.noisyLimitPerMinute) / 60);
  const C = opts.connections;
  const live = { streams: opts.liveStreams ?? 1000, mutationsPerS: opts.liveMutationsPerS ?? 10 };
  const L = opts.lowConnections;
  const enterprise = new Set(fixture.tenants.filter((t) => t.plan === "ENTERPRISE" && others.has(t.slug)).map((t) => t.slug));
  // One regular FREE tenant: the normal neighbour of bench-x-free on FREE's pool (docs/request-path.md, "Fairness within a tier").
  const freeOne = fixture.tenants.find((t) => t.plan === "FREE" && others.has(t.slug))!.slug;
  const neighbourScenarios = (): Scenario[] => {
    if (!neighbours || !neighbourTokens) return [];
    const entDash = dashboardGen(tokens, enterprise);
    const slow = (slug: string) => slowQueryGen(neighbourTokens, slug);
    return [
      { id: "enterprise-32", title: `dashboard, ${enterprise.size} ENTERPRISE tenants alone`, target: "server", connections: C, gen: entDash, countAs: "dashboard-32", samplePools: true },
      {
        id: "enterprise-slow-free-32",
        title: `dashboard, ENTERPRISE tenants + FREE ${neighbours.free.slug} running slow queries on 16 connections`,
        target: "server",
        connections: C,
        gen: entDash,
        countAs: "dashboard-32",
        samplePools: true,
        noise: { gen: slow(neighbours.free.slug), connections: 16 },
      },
      {
        id: "enterprise-busy-db-32",
        title: `dashboard, ENTERPRISE tenants + DATABASE-placed ${neighbours.database.slug} running slow queries on 16 connections`,
        target: "server",
        connections: C,
        gen: entDash,
        countAs: "dashboard-32",
        samplePools: true,
        noise: { gen: slow(neighbours.database.slug), connections: 16 },
      },
      { id: "free-one-4", title: `dashboard, one regular FREE tenant (${freeOne}) alone on 4 connections`, target: "server", connections: 4, gen: dashboardGen(tokens, new Set([freeOne])), countAs: "dashboard-32", samplePools: true },
      {
        id: "free-one-slow-free-4",
        title: `dashboard, one regular FREE tenant (${freeOne}) on 4 connections + FREE ${neighbours.free.slug} running slow queries on 16 connections`,
        target: "server",
        connections: 4,
        gen: dashboardGen(tokens, new Set([freeOne])),
        countAs: "dashboard-32",
        samplePools: true,
        noise: { gen: slow(neighbours.free.slug), connections: 16 },
      },
      { id: "placed-pooled-32", title: `dashboard, one POOLED ENTERPRISE tenant alone (${neighbours.pooled.slug})`, target: "server", connections: C, gen: dashboardGen(neighbourTokens, new Set([neighbours.pooled.slug])) },
      { id: "placed-db-32", title: `dashboard, one DATABASE-placed ENTERPRISE tenant alone (${neighbours.database.slug}, same data)`, target: "server", connections: C, gen: dashboardGen(neighbourTokens, new Set([neighbours.database.slug])), countAs: "placed-pooled-32" },
    ];
  };
  /** The dashboard beside the live load: `streams` open subscriptions and the writer. */
  const liveScenario = (id: string, title: string, streams: number): Scenario => ({
    id,
    title,
    target: "server",
    connections: C,
    gen: dash,
    floor: "floor-32",
    countAs: "dashboard-32",
    samplePools: true,
    live: { streams, mutationsPerS: live.mutationsPerS },
  });
  let scenarios: Scenario[] = [
    { id: "floor-32", title: `floor: dashboard`, target: "floor", connections: C, gen: dash },
    { id: "dashboard-32", title: "dashboard", target: "server", connections: C, gen: dash, floor: "floor-32", samplePools: true },
    // The live scenario's writer without the streams: what the 10 mutations/s cost the dashboard,
    // so that live-32 against it measures the streams alone (docs/live-updates.md, "Like with like").
    liveScenario("writer-32", `dashboard, ${live.mutationsPerS} mutations/s (the live scenario's writer), no streams`, 0),
    liveScenario("live-32", `dashboard, ${live.streams} subscription streams open, ${live.mutationsPerS} mutations/s`, live.streams),
    {
      id: "noisy-32",
      title: `dashboard, 99 others + noisy tenant at ${noiseRate * 60}/min (limit ${opts.noisyLimitPerMinute})`,
      target: "server",
      connections: C,
      gen: dash,
      floor: "floor-32",
      countAs: "dashboard-32",
      noise: { gen: dashboardGen(tokens, new Set([fixture.noisy.slug])), rate: noiseRate, connections: 16 },
    },
    { id: "floor-8", title: "floor: dashboard", target: "floor", connections: L, gen: dash },
    { id: "dashboard-8", title: "dashboard", target: "server", connections: L, gen: dash, floor: "floor-8", countAs: "dashboard-32" },
    { id: "pagination-32", title: "deployments(first: 50), page 1 + page 2", target: "server", connections: C, gen: paginationGen(regular, cursors) },
    { id: "mutation-mix-32", title: "90% dashboard + 10% createDeployment", target: "server", connections: C, gen: mutationMixGen(regular), countRepeats: true },
    {
      id: "read-mostly-32",
      title: "read-mostly: 95% dashboard (response cache on) + 5% createDeployment",
      target: "server",
      connections: C,
      gen: readMostlyGen(regular),
      floor: "floor-32",
      // Steady state, not the cold start: every (tenant, member) has read the dashboard once.
      prefill: { gen: cachedDashboardGen(regular), n: memberCount(regular) },
      countRepeats: true,
    },
    {
      id: "cached-32",
      title: "read-mostly's HIT path: the cached dashboard alone (response cache on, no changes)",
      target: "server",
      connections: C,
      gen: cachedDashboardGen(regular),
      floor: "floor-32",
      prefill: { gen: cachedDashboardGen(regular), n: memberCount(regular) },
      countRepeats: true,
    },
    ...neighbourScenarios(),
    {
      id: "usage-32",
      title: "platform.tenantUsage (100 tenants)",
      target: "server",
      connections: C,
      gen: usageQuery ? platformGen(tokens, usageQuery) : undefined,
      note: usageQuery ? undefined : usageNote,
    },
    {
      id: "usage-1",
      title: "platform.tenantUsage (100 tenants)",
      target: "server",
      connections: 1,
      gen: usageQuery ? platformGen(tokens, usageQuery) : undefined,
      note: usageQuery ? undefined : usageNote,
      countAs: "usage-32",
    },
  ];
  if (opts.only) scenarios = scenarios.filter((s) => opts.only!.includes(s.id));

  // Preflight: every scenario answers without errors, else it is reported n/a.
  for (const s of scenarios) {
    if (!s.gen || s.target === "floor") continue;
    const failure = await sendSequential(countServer, s.gen, 10);
    if (failure) {
      s.note = `preflight failed at request ${failure.at}: ${failure.failed}`;
      s.gen = undefined;
      log(`${s.id}: ${s.note}`);
    }
  }

  // Statements per request.
  const statements = new Map<string, StatementFigures>();
  const constancy: Record<string, number> = {};
  for (const s of scenarios) {
    if (!s.gen || s.countAs) continue;
    const figures = s.target === "floor"
      ? await countStatements(floorCounter, countFloor, s.gen, opts.countRequests)
      : await countStatements(serverCounter, countServer, s.countRepeats ? repeating(s.gen, opts.countRequests) : s.gen, opts.countRequests);
    statements.set(s.id, figures);
    log(`${s.id}: ${figures.perRequest.toFixed(2)} statements/request in ${(figures.messages ?? 0).toFixed(2)} messages (${figures.data.toFixed(2)} data, ${figures.transaction.toFixed(2)} BEGIN/COMMIT, ${figures.settings.toFixed(2)} set_config, ${figures.platformRole.toFixed(2)} on the platform role)`);
  }
  for (const s of scenarios) if (s.countAs && statements.has(s.countAs)) statements.set(s.id, statements.get(s.countAs)!);
  // The dashboard must not cost more statements with more projects on the page.
  for (const n of [5, 20, 50]) {
    const figures = await countStatements(serverCounter, countServer, dashboardGen(tokens, others, n), 10).catch(() => undefined);
    if (figures) constancy[`projects(first: ${n})`] = figures.perRequest;
  }
  log(`dashboard statements by page size: ${JSON.stringify(constancy)}`);
  await stopAll();
  await Promise.all([serverCounter.close(), floorCounter.close()]);

  // ---- load -----------------------------------------------------------------------------------
  log("starting the server and the floor");
  const [server, floor] = await Promise.all([
    start("server", "src/server.ts", opts.port, serverEnv(opts, fixture.url)),
    start("floor", "bench/floor-server.ts", opts.port + 1, floorEnv(opts, fixture.url)),
  ]);
  const restRssMb = { server: rssMb(server.proc.pid!) ?? NaN, floor: rssMb(floor.proc.pid!) ?? NaN };
  // JIT, connection pools and caches: once, before anything is measured.
  const initialWarmupS = Math.max(5, opts.warmupS);
  log(`warming both up for ${initialWarmupS} s (RSS at rest: server ${restRssMb.server.toFixed(0)} MB, floor ${restRssMb.floor.toFixed(0)} MB)`);
  for (const [port, gen] of [[server.port, dash], [floor.port, dash]] as const) {
    await runLoad({ url: `http://127.0.0.1:${port}`, connections: L, durationS: initialWarmupS, gen });
    await drain(`http://127.0.0.1:${port}`, gen);
  }
  const urlOf = (t: "server" | "floor") => `http://127.0.0.1:${t === "server" ? server.port : floor.port}`;
  const pidOf = (t: "server" | "floor") => (t === "server" ? server.proc.pid! : floor.proc.pid!);

  const results = new Map<string, ScenarioResult>(
    scenarios.map((s) => [
      s.id,
      { spec: { id: s.id, title: s.title, target: s.target, connections: s.connections, floor: s.floor }, status: s.gen ? "ok" : "n/a", note: s.note, runs: [], statements: statements.get(s.id), noise: s.noise ? [] : undefined },
    ]),
  );

  const neighbourRuns: NeighbourRun[] = [];
  type LiveRun = LiveFigures & { run: number; pair: number; rssPeakMb: number; dashboardP95: number; dashboardP50: number; alone?: LiveFigures & { cpuPct: number } };
  const liveRuns: LiveRun[] = [];
  /** writer-32: the same writer without streams. */
  const writerRuns: LiveRun[] = [];
  // writer-32 and live-32 both run: as interleaved pairs (bench/live-pairs.ts), measured where writer-32 stands.
  const hasGen = (s: Scenario | undefined): s is Scenario & { gen: RequestGenerator } => !!s?.gen;
  const writerScenario = scenarios.filter(hasGen).find((s) => s.id === "writer-32");
  const liveScenario_ = scenarios.filter(hasGen).find((s) => s.id === "live-32");
  const pairs = writerScenario && liveScenario_ ? (opts.livePairs ?? 3) : 0;
  for (let run = 1; run <= opts.runs; run++) {
    for (const s of scenarios) {
      if (!hasGen(s) || (pairs && s === liveScenario_)) continue;
      if (pairs && s === writerScenario) {
        for (let pair = 0; pair < pairs; pair++) {
          for (const x of pair % 2 ? [liveScenario_!, writerScenario] : [writerScenario, liveScenario_!]) await measure(x, run, pair);
        }
        continue;
      }
      await measure(s, run, 0);
    }
  }
  /** One measured window of scenario `s` (in run `run`, pair `pair` of the live comparison). */
  async function measure(s: Scenario & { gen: RequestGenerator }, run: number, pair: number) {
    {
      const url = urlOf(s.target);
      const noise = s.noise
        ? runLoad({ url, connections: s.noise.connections, durationS: opts.warmupS + opts.durationS + 1, gen: s.noise.gen, overallRate: s.noise.rate })
        : undefined;
      const live = s.live ? await startLiveLoad(url, regular, s.live) : undefined;
      if (opts.warmupS > 0) await runLoad({ url, connections: s.connections, durationS: opts.warmupS, gen: s.gen });
      if (s.prefill) await prefill(url, s.prefill.gen, s.prefill.n);
      await drain(url, s.gen);
      live?.measure();
      const alone = live ? await liveAlone(live, pidOf(s.target), opts.durationS) : undefined;
      const rss = sampleRss(pidOf(s.target));
      const pools = s.samplePools ? samplePools(url) : undefined;
      const cpu0 = cpuMs(pidOf(s.target)) ?? NaN;
      const result: LoadResult = await runLoad({ url, connections: s.connections, durationS: opts.durationS, gen: s.gen });
      const cpuMsPerRequest = result.requests ? ((cpuMs(pidOf(s.target)) ?? NaN) - cpu0) / result.requests : NaN;
      const rssPeakMb = rss.stop();
      const poolSample = pools?.stop();
      if (live) {
        const figures = await live.stop();
        (s.id === "live-32" ? liveRuns : writerRuns).push({ ...figures, run, pair, rssPeakMb, dashboardP95: result.p95, dashboardP50: result.p50, alone });
        log(`run ${run}/${opts.runs}${pairs ? ` pair ${pair + 1}/${pairs}` : ""} ${s.id}: live alone ${alone!.p50.toFixed(1)}/${alone!.p95.toFixed(1)} ms p50/p95, ${alone!.delivered}/${alone!.expected} deliveries, server ${alone!.cpuPct.toFixed(1)}% of a core; with the load: ${figures.streams} streams over ${figures.tenants} tenants, ${figures.mutations} mutations, ${figures.delivered}/${figures.expected} deliveries, commit->delivery p50 ${figures.p50.toFixed(1)} p95 ${figures.p95.toFixed(1)} p99 ${figures.p99.toFixed(1)} ms; p95 from updatedAt ${figures.sinceUpdatedP95.toFixed(1)} ms; mutation p95 ${figures.mutationP95.toFixed(1)} ms (alone: ${alone!.sinceUpdatedP95.toFixed(1)} / ${alone!.mutationP95.toFixed(1)} ms); CPU, % of a core, alone / with the dashboard: the writer's process ${alone!.writerCpuPct.toFixed(1)} / ${figures.writerCpuPct.toFixed(1)}, the stream clients' process (${clientsPriority(figures)}) ${alone!.streamsCpuPct.toFixed(1)} / ${figures.streamsCpuPct.toFixed(1)}`);
      }
      const r = results.get(s.id)!;
      r.runs.push({ ...result, rssPeakMb, cpuMsPerRequest, pools: poolSample });
      const noiseResult = noise ? await noise : undefined;
      if (noiseResult) r.noise!.push(noiseResult);
      if (NEIGHBOUR_SCENARIOS.includes(s.id)) {
        neighbourRuns.push({ run, id: s.id, p50: result.p50, p95: result.p95, rps: result.rps, cpuMsPerRequest, pools: poolSample, noise: noiseResult, loadAverage: os.loadavg()[0]! });
      }
      if (poolSample) log(`run ${run}/${opts.runs} ${s.id}: pools waiting max ${JSON.stringify(poolSample.waitingMax)} share ${JSON.stringify(poolSample.waitingShare)}; machine CPU busy ${poolSample.machineBusyPct.toFixed(0)}%${noiseResult ? `; noise ${noiseResult.rps.toFixed(1)} req/s p50 ${noiseResult.p50.toFixed(0)} p95 ${noiseResult.p95.toFixed(0)} ms, errors ${noiseResult.errors + noiseResult.gqlErrors}, non-2xx ${noiseResult.non2xx}` : ""}`);
      log(
        `run ${run}/${opts.runs} ${s.id.padEnd(16)} ${result.rps.toFixed(1).padStart(7)} req/s  p50 ${result.p50.toFixed(1)}  p95 ${result.p95.toFixed(1)}  p99 ${result.p99.toFixed(1)} ms  errors ${result.errors + result.gqlErrors}  non-2xx ${result.non2xx}  cpu ${cpuMsPerRequest.toFixed(2)} ms/req  rss ${rssPeakMb.toFixed(0)} MB  load ${os.loadavg()[0]!.toFixed(1)}`,
      );
      if (server.proc.exitCode !== null) throw new Error(`server died:\n${server.output.slice(-30).join("\n")}`);
    }
  }
  await stopAll();

  // ---- report ---------------------------------------------------------------------------------
  const all = [...results.values()];
  const rows = summarize(all);
  const dash32 = results.get("dashboard-32");
  const noisy = results.get("noisy-32");
  const noisyDeltaPct =
    dash32?.runs.length && noisy?.runs.length
      ? median(noisy.runs.map((r, i) => (dash32.runs[i] ? (r.p95 / dash32.runs[i]!.p95 - 1) * 100 : NaN)))
      : null;
  const noiseRuns = noisy?.noise ?? [];
  const noiseSummary = noiseRuns.length
    ? {
        rps: median(noiseRuns.map((n) => n.rps)),
        rejected429: median(noiseRuns.map((n) => n.statusCodes["429"] ?? 0)),
        served200: median(noiseRuns.map((n) => n.statusCodes["200"] ?? 0)),
      }
    : undefined;
  const checks = checkTargets(rows, noisyDeltaPct);
  const liveSummary = liveRuns.length
    ? {
        streams: liveRuns[0]!.streams,
        tenants: liveRuns[0]!.tenants,
        mutationsPerS: live.mutationsPerS,
        delivered: median(liveRuns.map((r) => r.delivered)),
        expected: median(liveRuns.map((r) => r.expected)),
        p50: median(liveRuns.map((r) => r.p50)),
        p95: median(liveRuns.map((r) => r.p95)),
        p99: median(liveRuns.map((r) => r.p99)),
        aloneP95: median(liveRuns.map((r) => r.alone!.p95)),
        sinceUpdatedP95: median(liveRuns.map((r) => r.sinceUpdatedP95)),
        mutationP95: median(liveRuns.map((r) => r.mutationP95)),
        aloneCpuPct: median(liveRuns.map((r) => r.alone!.cpuPct)),
        rssPeakMb: median(liveRuns.map((r) => r.rssPeakMb)),
        // The dashboard's p95 with the streams open against the dashboard run just before it.
        dashboardP95DeltaPct: dash32?.runs.length ? median(liveRuns.map((r) => deltaPct(r.dashboardP95, dash32.runs[r.run - 1]?.p95))) : null,
        // ... and against the dashboard with the same writer and no streams (the streams' own cost), pair by pair.
        writerP95DeltaPct: writerRuns.length ? median(liveRuns.map((r) => deltaPct(r.dashboardP95, writerRuns.find((w) => w.run === r.run && w.pair === r.pair)?.dashboardP95))) : null,
        paired: pairFigures(liveRuns, writerRuns),
        // The writer alone against the dashboard alone (what the 10 mutations/s cost it).
        writerVsDashboardPct: writerRuns.length && dash32?.runs.length ? median(writerRuns.map((w) => deltaPct(w.dashboardP95, dash32.runs[w.run - 1]?.p95))) : null,
        writerAloneCpuPct: writerRuns.length ? median(writerRuns.map((r) => r.alone!.cpuPct)) : null,
        // The load's own processes (bench/live.ts), % of a core, with the dashboard: the writer's (normal priority) and the stream clients' (niced).
        streamsNice: liveRuns[0]!.streamsNice,
        streamsIdle: liveRuns[0]!.streamsIdle,
        writerProcessCpuPct: median(liveRuns.map((r) => r.writerCpuPct)),
        streamsProcessCpuPct: median(liveRuns.map((r) => r.streamsCpuPct)),
        writerProcessCpuPctNoStreams: writerRuns.length ? median(writerRuns.map((r) => r.writerCpuPct)) : null,
        streamsProcessCpuPctNoStreams: writerRuns.length ? median(writerRuns.map((r) => r.streamsCpuPct)) : null,
      }
    : undefined;
  const hostInfo = await host;

  const stamp = startedAt.toISOString().slice(0, 19).replace(/:/g, "-");
  const setup = `${opts.runs} run(s) x ${opts.durationS} s after ${opts.warmupS} s warm-up; medians; ${fixture.counts.tenants} tenants x ${opts.projectsPerTenant} projects x ${opts.deploymentsPerProject} deployments; server ${benchServer() === "dist" ? "compiled (dist/server.js, as npm run start:prod)" : "through tsx (src/server.ts, as npm start)"}`;
  const md = [
    `# Benchmark ${startedAt.toISOString()}`,
    ``,
    `Machine: ${hostInfo.cpus}, ${hostInfo.memoryGb} GB, Node ${hostInfo.node}, PostgreSQL ${hostInfo.postgres}, Redis ${hostInfo.redis} (load average at start: ${hostInfo.loadAverage}).`,
    `Setup: ${setup}. Seeded in ${(fixture.seedMs / 1000).toFixed(1)} s. RSS at rest after start: server ${restRssMb.server.toFixed(0)} MB, floor ${restRssMb.floor.toFixed(0)} MB.`,
    `Client (autocannon), server, floor, PostgreSQL and Redis share the machine's cores.`,
    ``,
    table(rows),
    ``,
    `- errors: connection errors, timeouts and 2xx responses carrying GraphQL errors (summed over runs); non-2xx summed over runs.`,
    `- SQL/req: statements PostgreSQL received per request (BEGIN/COMMIT and set_config included), counted on the wire by a proxy in front of a separate server instance, caches warm.`,
    `- ratio to floor: req/s divided by the floor's in the same run (dashboard rows only: the same request), median over runs.`,
    `- CPU ms/req: user+system CPU of the target process (server or floor; not PostgreSQL, Redis or the client) during the measured run, divided by its responses. Less sensitive to a busy machine than req/s.`,
    `- floor and server dashboard JSON: ${shapeCheck}.`,
    noiseSummary
      ? `- noisy tenant (fixed rate): sent ${noiseSummary.rps.toFixed(1)} req/s (10x its ${opts.noisyLimitPerMinute}/min), ${noiseSummary.served200} served (its limit: full dashboards, ${((100 * noiseSummary.served200) / median(noisy!.runs.map((r) => r.requests))).toFixed(0)}% on top of the others' requests) and ${noiseSummary.rejected429} rejected with 429 per run (median); the others' p95 moved by ${noisyDeltaPct?.toFixed(1)}% against the dashboard run just before. Under a closed-loop load that saturates the server, any admitted extra work shows up in p95.`
      : `- noisy tenant: not run.`,
    readMostlyLine(results.get("read-mostly-32"), dash32),
    liveSummary
      ? `- live updates: ${liveSummary.streams} subscription streams (deploymentUpdated; half graphql-ws, half SSE) over ${liveSummary.tenants} tenants, ${liveSummary.mutationsPerS} createDeployment/s; ${liveSummary.delivered} of ${liveSummary.expected} expected deliveries per run; commit->delivery p50 ${liveSummary.p50.toFixed(1)} ms, p95 ${liveSummary.p95.toFixed(1)} ms (target < 100), p99 ${liveSummary.p99.toFixed(1)} ms, from the event's commit time (p95 from the deployment's updatedAt, written before the rest of its transaction: ${liveSummary.sinceUpdatedP95.toFixed(1)} ms; createDeployment p95 ${liveSummary.mutationP95.toFixed(1)} ms) (the live load alone just before, same streams: p95 ${liveSummary.aloneP95.toFixed(1)} ms, server CPU ${liveSummary.aloneCpuPct.toFixed(1)}% of a core); server RSS peak ${liveSummary.rssPeakMb.toFixed(0)} MB with the streams open; the dashboard's p95 moved by ${liveSummary.dashboardP95DeltaPct?.toFixed(1)}% against the dashboard run just before (target < 10%)${liveSummary.writerP95DeltaPct == null ? "" : `, by ${liveSummary.writerP95DeltaPct.toFixed(1)}% against \`writer-32\` (the same dashboard and ${liveSummary.mutationsPerS} createDeployment/s without streams: the streams' own cost; the writer alone moved it by ${liveSummary.writerVsDashboardPct?.toFixed(1)}%, and cost the server ${liveSummary.writerAloneCpuPct?.toFixed(1)}% of a core alone against ${liveSummary.aloneCpuPct.toFixed(1)}% with the streams)${pairLine(liveSummary.paired)}`}. ${liveLoadLine(liveSummary)} Medians over runs${pairs > 1 ? ` (writer-32 and live-32: over every window, ${pairs} of each per run)` : ""}.`
      : `- live updates: not run.`,
    ...neighbourLines(neighbourRuns, moveNote),
    ``,
    checksTable(checks),
    ``,
    `Statements per request (data / BEGIN-COMMIT / set_config / on the platform role):`,
    ``,
    ...[...statements.entries()]
      .filter(([id]) => !scenarios.find((s) => s.id === id)?.countAs)
      .map(([id, f]) => `- ${id}: ${f.perRequest.toFixed(2)} = ${f.data.toFixed(2)} / ${f.transaction.toFixed(2)} / ${f.settings.toFixed(2)} / ${f.platformRole.toFixed(2)}; ${f.top.map((t) => `${t.perRequest.toFixed(2)}x \`${t.sql}\``).join("; ")}`),
    `- dashboard by page size: ${Object.entries(constancy).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ")}`,
    ...all.filter((r) => r.status !== "ok").map((r) => `- ${r.spec.id}: n/a (${r.note})`),
    ``,
  ].join("\n");

  const dir = path.join(ROOT, "bench", "results");
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, `${stamp}.json`),
    JSON.stringify({ startedAt, machine: hostInfo, restRssMb, options: { ...opts, databaseUrl: undefined, redisUrl: undefined, jwtSecret: undefined }, seed: { ms: fixture.seedMs, counts: fixture.counts }, shapeCheck, statements: Object.fromEntries(statements), dashboardStatementsByPageSize: constancy, noisyDeltaPct, noise: noiseSummary, neighbours: neighbourRuns, neighbourMove: moveNote, live: liveSummary, liveRuns, writerRuns, summary: rows, checks, scenarios: all.map((r) => ({ ...r.spec, status: r.status, note: r.note, runs: r.runs, noise: r.noise })) }, null, 2),
  );
  await writeFile(path.join(dir, `${stamp}.md`), md);
  process.stdout.write(`\n${md}\n`);
  log(`written bench/results/${stamp}.json and .md in ${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s`);
}

/** How the stream clients were scheduled (bench/live.ts): SCHED_IDLE, a niceness, or normal priority. */
const clientsPriority = (l: { streamsNice: number; streamsIdle: boolean }) =>
  l.streamsIdle ? "SCHED_IDLE" : l.streamsNice ? `nice ${l.streamsNice}` : "normal priority";

/** The live load's own processes (bench/live.ts): their scheduling and CPU, and what a deprioritised client means for the latency. */
function liveLoadLine(l: { streamsNice: number; streamsIdle: boolean; writerProcessCpuPct: number; streamsProcessCpuPct: number; writerProcessCpuPctNoStreams: number | null; streamsProcessCpuPctNoStreams: number | null }): string {
  const noStreams = l.writerProcessCpuPctNoStreams == null ? "" : ` (in writer-32: ${l.writerProcessCpuPctNoStreams.toFixed(1)}% and ${l.streamsProcessCpuPctNoStreams!.toFixed(1)}%)`;
  const late = "a client run so may see an event late when the cores are saturated, which lengthens the measured commit->delivery time, never shortens it";
  const how = l.streamsIdle
    ? `under SCHED_IDLE (BENCH_LIVE_CLIENT_SCHED=idle, the default since the ninth round), so they run only when no other thread wants a core (in production they are browsers on other machines); ${late}`
    : l.streamsNice
      ? `at niceness ${l.streamsNice} (BENCH_LIVE_CLIENT_SCHED=normal), so they get the CPU the server, PostgreSQL and autocannon leave, and a small share of a busy core; ${late}`
      : `at normal priority (BENCH_LIVE_CLIENT_SCHED=normal BENCH_LIVE_CLIENT_NICE=0), competing with the server for the cores as in the runs before the seventh round`;
  return `The load's own processes: the writer at normal priority, the stream clients ${how}; their CPU with the dashboard, % of a core: writer ${l.writerProcessCpuPct.toFixed(1)}%, stream clients ${l.streamsProcessCpuPct.toFixed(1)}%${noStreams}.`;
}

const deltaPct = (x: number, base: number | undefined) => (base ? (x / base - 1) * 100 : NaN);

/** The response cache's figures of the read-mostly scenario (issue 14), medians over runs. */
function readMostlyLine(r: ScenarioResult | undefined, dash32: ScenarioResult | undefined): string {
  const runs = (r?.runs ?? []).filter((x) => x.cache);
  if (!runs.length) return `- read-mostly: not run.`;
  const m = (f: (c: NonNullable<LoadResult["cache"]>) => number | null) => median(runs.map((x) => f(x.cache!) ?? NaN));
  const dash = dash32?.runs.length ? `; the uncached dashboard (Cache-Control: no-cache) in the same run: p50 ${median(dash32.runs.map((x) => x.p50)).toFixed(1)} ms, p95 ${median(dash32.runs.map((x) => x.p95)).toFixed(1)} ms` : "";
  return `- read-mostly (response cache): hit rate ${(100 * m((c) => c.hitRate)).toFixed(1)}% of cacheable reads (${m((c) => c.hit).toFixed(0)} HIT / ${m((c) => c.miss).toFixed(0)} MISS per run); hits p50 ${m((c) => c.hitP50).toFixed(1)} ms, p95 ${m((c) => c.hitP95).toFixed(1)} ms; misses p50 ${m((c) => c.missP50).toFixed(1)} ms, p95 ${m((c) => c.missP95).toFixed(1)} ms${dash}. Every other scenario sends Cache-Control: no-cache (BYPASS).`;
}

process.on("SIGINT", () => {
  void stopAll().then(() => process.exit(130));
});

main()
  .catch(async (err) => {
    console.error(err);
    await stopAll();
    process.exit(1);
  })
  .then(() => process.exit(0));
