import { readFileSync } from "node:fs";
import pg from "pg";
import { MEMBER_ROLES, NEIGHBOUR_PREFIX, type BenchTenant, type MemberRole } from "./seed.ts";
import type { LoadResult } from "./load.ts";
import { median } from "./report.ts";

/**
 * The tenants of the neighbour scenarios (issue 15 point 5), seeded next to
 * the N regular ones and outside them (slugs `bench-x-*`: no other scenario
 * reads them, `loadTenants` leaves them out), all with the same data: 5
 * members, 20 projects, BENCH_BULK_DEPLOYMENTS deployments (50,000 by
 * default: 50x a regular tenant, so a count over them is a slow query):
 *
 *   bench-x-free    FREE, POOLED: runs the slow queries (FREE's tier pool)
 *   bench-x-db      ENTERPRISE, moved to a DATABASE placement by the bench
 *                   (its own database, its own tier pools): the busy
 *                   DATABASE tenant, and the DATABASE side of the
 *                   placement dashboard comparison
 *   bench-x-pooled  ENTERPRISE, POOLED: the POOLED side of that comparison
 *                   (the same plan and data as bench-x-db)
 */

export const NEIGHBOUR_SLUGS = { free: `${NEIGHBOUR_PREFIX}free`, database: `${NEIGHBOUR_PREFIX}db`, pooled: `${NEIGHBOUR_PREFIX}pooled` } as const;

export interface Neighbours {
  free: BenchTenant;
  database: BenchTenant;
  pooled: BenchTenant;
  deploymentsPerTenant: number;
}

const UNLIMITED = 1_000_000_000;
const PROJECTS = 20;

export async function seedNeighbours(url: string, bulkDeployments: number): Promise<Neighbours> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const slugs = [NEIGHBOUR_SLUGS.free, NEIGHBOUR_SLUGS.database, NEIGHBOUR_SLUGS.pooled];
  const plans = ["FREE", "ENTERPRISE", "ENTERPRISE"];
  try {
    await db.query("BEGIN");
    await db.query("SET LOCAL ROLE tenantgraph_platform");
    await db.query(
      `INSERT INTO tenants (slug, name, plan, created_at)
       SELECT s, 'Bench neighbour ' || s, p::"Plan", now() - interval '500 days' FROM unnest($1::text[], $2::text[]) AS x(s, p)`,
      [slugs, plans],
    );
    const roles = MEMBER_ROLES.map((r, k) => `(${k + 1}, '${r}')`).join(", ");
    await db.query(
      `CREATE TEMP TABLE neighbour_members ON COMMIT DROP AS
       SELECT t.id AS tenant_id, r.k, r.role::"Role" AS role, lower(r.role) || '-' || r.k || '@' || t.slug || '.test' AS email
         FROM tenants t CROSS JOIN (VALUES ${roles}) AS r(k, role) WHERE t.slug = ANY($1)`,
      [slugs],
    );
    await db.query(`INSERT INTO users (email, name, auth_subject) SELECT email, 'Member ' || k, email FROM neighbour_members`);
    await db.query(
      `INSERT INTO memberships (tenant_id, user_id, role, created_at)
       SELECT m.tenant_id, u.id, m.role, now() - interval '300 days' + m.k * interval '1 minute'
         FROM neighbour_members m JOIN users u ON u.email = m.email`,
    );
    await db.query(
      `INSERT INTO projects (tenant_id, name, slug, description, created_at, updated_at)
       SELECT t.id, 'Project ' || p, 'project-' || p, 'Neighbour project ' || p, now() - interval '400 days' + p * interval '1 hour',
              now() - interval '400 days' + p * interval '1 hour'
         FROM tenants t CROSS JOIN generate_series(1, ${PROJECTS}) AS p WHERE t.slug = ANY($1)`,
      [slugs],
    );
    const perProject = Math.max(1, Math.round(bulkDeployments / PROJECTS));
    await db.query(
      `INSERT INTO deployments (tenant_id, project_id, status, url, commit_sha, branch, created_by_id, created_at, updated_at)
       SELECT p.tenant_id, p.id,
              (ARRAY['READY','READY','BUILDING','ERROR','QUEUED','CANCELED'])[1 + d % 6]::"DeploymentStatus",
              'https://' || p.slug || '-' || d || '.example.dev', substr(md5(p.id::text || d), 1, 12),
              CASE WHEN d % 3 = 0 THEN 'main' ELSE 'feature-' || (d % 50) END,
              c.ids[1 + d % array_length(c.ids, 1)],
              p.created_at + d * interval '1 minute', p.created_at + d * interval '1 minute' + (d % 97) * interval '1 second'
         FROM projects p
         JOIN tenants t ON t.id = p.tenant_id AND t.slug = ANY($1)
         JOIN (SELECT m.tenant_id, array_agg(u.id ORDER BY m.k) AS ids FROM neighbour_members m JOIN users u ON u.email = m.email GROUP BY m.tenant_id) c
           ON c.tenant_id = p.tenant_id
        CROSS JOIN generate_series(1, $2::int) AS d`,
      [slugs, perProject],
    );
    await db.query(
      `INSERT INTO tenant_limit_overrides (tenant_id, resource, "limit")
       SELECT t.id, r::"QuotaResource", $2::int
         FROM tenants t CROSS JOIN unnest(ARRAY['API_REQUESTS_PER_MINUTE', 'DEPLOYMENTS_PER_HOUR', 'WORKFLOWS_PER_HOUR', 'SUBSCRIPTIONS']) AS r
        WHERE t.slug = ANY($1)`,
      [slugs, UNLIMITED],
    );
    await db.query("COMMIT");
    await db.query("ANALYZE deployments");
    const { rows } = await db.query<{ id: string; slug: string; plan: string; members: { email: string; role: MemberRole }[]; projects: string[] }>(
      `SELECT t.id, t.slug, t.plan,
              (SELECT json_agg(json_build_object('email', u.email, 'role', m.role) ORDER BY m.created_at)
                 FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = t.id) AS members,
              (SELECT array_agg(p.id::text ORDER BY p.created_at DESC, p.id DESC) FROM projects p WHERE p.tenant_id = t.id) AS projects
         FROM tenants t WHERE t.slug = ANY($1)`,
      [slugs],
    );
    const bySlug = new Map(rows.map((r) => [r.slug, { id: r.id, slug: r.slug, plan: r.plan, members: r.members, projectIds: r.projects }]));
    return {
      free: bySlug.get(NEIGHBOUR_SLUGS.free)!,
      database: bySlug.get(NEIGHBOUR_SLUGS.database)!,
      pooled: bySlug.get(NEIGHBOUR_SLUGS.pooled)!,
      deploymentsPerTenant: perProject * PROJECTS,
    };
  } catch (err) {
    await db.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    await db.end();
  }
}

/** The pool gauges of the server's /metrics (`tenantgraph_db_pool_connections`), by pool and state. */
async function poolGauges(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^tenantgraph_db_pool_connections\{pool="([^"]+)",state="([^"]+)"\} (\S+)$/gm)) {
    out.set(`${m[1]}:${m[2]}`, Number(m[3]));
  }
  return out;
}

/** Busy and total jiffies of the whole machine so far (/proc/stat's cpu line). */
function machineJiffies(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

export interface PoolSample {
  /** Most requests seen queued for a connection of a pool (app_enterprise, app_free, ...), sampled once a second. */
  waitingMax: Record<string, number>;
  /** Share of the samples where the pool had a request queued. */
  waitingShare: Record<string, number>;
  /**
   * Connections checked out (total - idle), mean over the samples: the
   * pool's held-connection time per second, what a time share bounds
   * (docs/request-path.md, "Time shares"). Absent in files of before.
   */
  busyMean?: Record<string, number>;
  /** The machine's CPU busy over the window, % of all cores (every process: server, PostgreSQL, clients, other sessions). */
  machineBusyPct: number;
}

/**
 * Samples the server's pool gauges once a second and the machine's CPU:
 * whether the ENTERPRISE requests waited for a connection (pool starvation)
 * or the machine had no CPU to spare.
 */
export function samplePools(url: string, everyMs = 1000) {
  const j0 = machineJiffies();
  const max: Record<string, number> = {};
  const queued: Record<string, number> = {};
  const busy: Record<string, number> = {};
  let samples = 0;
  const timer = setInterval(() => {
    void poolGauges(url)
      .then((g) => {
        samples++;
        for (const [key, v] of g) {
          const [pool, state] = key.split(":");
          if (state === "total") busy[pool!] = (busy[pool!] ?? 0) + v - (g.get(`${pool}:idle`) ?? 0);
          if (state !== "waiting") continue;
          max[pool!] = Math.max(max[pool!] ?? 0, v);
          queued[pool!] = (queued[pool!] ?? 0) + (v > 0 ? 1 : 0);
        }
      })
      .catch(() => {});
  }, everyMs);
  return {
    stop(): PoolSample {
      clearInterval(timer);
      const j1 = machineJiffies();
      const waitingShare = Object.fromEntries(Object.entries(queued).map(([k, n]) => [k, samples ? n / samples : NaN]));
      const busyMean = Object.fromEntries(Object.entries(busy).map(([k, n]) => [k, samples ? n / samples : NaN]));
      return { waitingMax: max, waitingShare, busyMean, machineBusyPct: (100 * (j1.busy - j0.busy)) / Math.max(1, j1.total - j0.total) };
    },
  };
}

/** The scenarios that need the neighbour tenants (bench/run.ts). */
export const NEIGHBOUR_SCENARIOS = ["enterprise-32", "enterprise-slow-free-32", "enterprise-busy-db-32", "free-one-4", "free-one-slow-free-4", "placed-pooled-32", "placed-db-32"];

export interface NeighbourRun {
  run: number;
  id: string;
  p50: number;
  p95: number;
  rps: number;
  cpuMsPerRequest: number;
  pools?: PoolSample;
  noise?: LoadResult;
  /** 1-minute load average at the end of the measured run. */
  loadAverage: number;
}

const pct = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(1)}%`;

/** Medians over runs of the per-run figures: the ENTERPRISE p95 with a neighbour against alone, DATABASE against POOLED. */
export function neighbourFigures(runs: NeighbourRun[]) {
  const byRun = new Map<number, Map<string, NeighbourRun>>();
  for (const r of runs) byRun.set(r.run, (byRun.get(r.run) ?? new Map()).set(r.id, r));
  const ratio = (id: string, base: string, f: (r: NeighbourRun) => number) =>
    median([...byRun.values()].map((m) => (m.get(id) && m.get(base) ? f(m.get(id)!) / f(m.get(base)!) : NaN)));
  const of = (id: string, f: (r: NeighbourRun) => number) => median(runs.filter((r) => r.id === id).map(f));
  return {
    alone: { p95: of("enterprise-32", (r) => r.p95), rps: of("enterprise-32", (r) => r.rps), busy: of("enterprise-32", (r) => r.pools?.machineBusyPct ?? NaN) },
    slowFree: {
      p95: of("enterprise-slow-free-32", (r) => r.p95),
      p95Ratio: ratio("enterprise-slow-free-32", "enterprise-32", (r) => r.p95),
      rpsRatio: ratio("enterprise-slow-free-32", "enterprise-32", (r) => r.rps),
      noiseRps: of("enterprise-slow-free-32", (r) => r.noise?.rps ?? NaN),
      noiseP50: of("enterprise-slow-free-32", (r) => r.noise?.p50 ?? NaN),
      noiseErrors: runs.filter((r) => r.id === "enterprise-slow-free-32").reduce((n, r) => n + (r.noise ? r.noise.errors + r.noise.gqlErrors + r.noise.non2xx : 0), 0),
      entWaitingMax: Math.max(0, ...runs.filter((r) => r.id === "enterprise-slow-free-32").map((r) => r.pools?.waitingMax.app_enterprise ?? 0)),
      freeWaitingShare: of("enterprise-slow-free-32", (r) => r.pools?.waitingShare.app_free ?? NaN),
      freeBusy: of("enterprise-slow-free-32", (r) => r.pools?.busyMean?.app_free ?? NaN),
      busy: of("enterprise-slow-free-32", (r) => r.pools?.machineBusyPct ?? NaN),
    },
    busyDb: {
      p95: of("enterprise-busy-db-32", (r) => r.p95),
      p95Ratio: ratio("enterprise-busy-db-32", "enterprise-32", (r) => r.p95),
      rpsRatio: ratio("enterprise-busy-db-32", "enterprise-32", (r) => r.rps),
      noiseRps: of("enterprise-busy-db-32", (r) => r.noise?.rps ?? NaN),
      noiseP50: of("enterprise-busy-db-32", (r) => r.noise?.p50 ?? NaN),
      noiseErrors: runs.filter((r) => r.id === "enterprise-busy-db-32").reduce((n, r) => n + (r.noise ? r.noise.errors + r.noise.gqlErrors + r.noise.non2xx : 0), 0),
      entWaitingMax: Math.max(0, ...runs.filter((r) => r.id === "enterprise-busy-db-32").map((r) => r.pools?.waitingMax.app_enterprise ?? 0)),
      busy: of("enterprise-busy-db-32", (r) => r.pools?.machineBusyPct ?? NaN),
    },
    freeOne: {
      alone: of("free-one-4", (r) => r.p95),
      p95: of("free-one-slow-free-4", (r) => r.p95),
      p95Ratio: ratio("free-one-slow-free-4", "free-one-4", (r) => r.p95),
      noiseRps: of("free-one-slow-free-4", (r) => r.noise?.rps ?? NaN),
    },
    placement: {
      rpsRatio: ratio("placed-db-32", "placed-pooled-32", (r) => r.rps),
      p95Ratio: ratio("placed-db-32", "placed-pooled-32", (r) => r.p95),
      dbRps: of("placed-db-32", (r) => r.rps),
      pooledRps: of("placed-pooled-32", (r) => r.rps),
      dbP95: of("placed-db-32", (r) => r.p95),
      pooledP95: of("placed-pooled-32", (r) => r.p95),
      dbCpu: of("placed-db-32", (r) => r.cpuMsPerRequest),
      pooledCpu: of("placed-pooled-32", (r) => r.cpuMsPerRequest),
    },
  };
}

/** The report's lines of the neighbour scenarios. */
export function neighbourLines(runs: NeighbourRun[], moveNote: string): string[] {
  if (!runs.length) return [`- neighbours (tier pools, placements): not run.`];
  const f = neighbourFigures(runs);
  return [
    `- neighbours (issue 15 point 5; ENTERPRISE dashboards over the regular ENTERPRISE tenants at the scenario's connections, each run against \`enterprise-32\` of the same run, medians of the per-run ratios): alone p95 ${f.alone.p95.toFixed(1)} ms (machine CPU busy ${f.alone.busy.toFixed(0)}%).`,
    `  - FREE tenant's slow queries (16 connections, closed loop; FREE's pool admits POOL_SIZE_FREE of them at a time): ENTERPRISE p95 ${f.slowFree.p95.toFixed(1)} ms, **${pct((f.slowFree.p95Ratio - 1) * 100)}** (req/s x${f.slowFree.rpsRatio.toFixed(2)}); the slow queries ${f.slowFree.noiseRps.toFixed(1)} req/s, p50 ${f.slowFree.noiseP50.toFixed(0)} ms, ${f.slowFree.noiseErrors} errors; ENTERPRISE pool queue max ${f.slowFree.entWaitingMax}, FREE pool queued in ${(100 * f.slowFree.freeWaitingShare).toFixed(0)}% of samples, its connections busy ${f.slowFree.freeBusy.toFixed(2)} on average (POOL_TIME_SHARE_FREE bounds this); machine CPU busy ${f.slowFree.busy.toFixed(0)}%.`,
    `  - busy DATABASE-placed tenant's slow queries (16 connections, its own pools): ENTERPRISE p95 ${f.busyDb.p95.toFixed(1)} ms, **${pct((f.busyDb.p95Ratio - 1) * 100)}** (req/s x${f.busyDb.rpsRatio.toFixed(2)}); the slow queries ${f.busyDb.noiseRps.toFixed(1)} req/s, p50 ${f.busyDb.noiseP50.toFixed(0)} ms, ${f.busyDb.noiseErrors} errors; ENTERPRISE pool queue max ${f.busyDb.entWaitingMax}; machine CPU busy ${f.busyDb.busy.toFixed(0)}%.`,
    `  - a regular FREE tenant's dashboard (4 connections) beside the FREE tenant's slow queries (16 connections, both on FREE's pool; docs/request-path.md "Fairness within a tier"): p95 ${f.freeOne.p95.toFixed(1)} ms against ${f.freeOne.alone.toFixed(1)} ms alone, **x${f.freeOne.p95Ratio.toFixed(2)}**; the slow queries ${f.freeOne.noiseRps.toFixed(1)} req/s.`,
    `  - placement: one DATABASE-placed tenant's dashboard alone ${f.placement.dbRps.toFixed(1)} req/s, p95 ${f.placement.dbP95.toFixed(1)} ms, ${f.placement.dbCpu.toFixed(2)} CPU ms/req; its POOLED twin (same plan and data) ${f.placement.pooledRps.toFixed(1)} req/s, p95 ${f.placement.pooledP95.toFixed(1)} ms, ${f.placement.pooledCpu.toFixed(2)} CPU ms/req: DATABASE / POOLED req/s **x${f.placement.rpsRatio.toFixed(2)}**, p95 x${f.placement.p95Ratio.toFixed(2)}.${moveNote ? ` (${moveNote}.)` : ""}`,
  ];
}
