import { mkdirSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import type { BenchOptions } from "../bench/options.ts";
import { ROOT, serverEnv } from "../bench/processes.ts";
import { seedBenchDatabase, tenantSlug } from "../bench/seed.ts";
import { signDevToken } from "../src/tenancy/tokens.ts";
import { allReady, inject, planFaults, type FaultRecord } from "./faults.ts";
import { chaosOptions, type ChaosOptions } from "./options.ts";
import { Replica } from "./replicas.ts";
import { summarize, writeSummary } from "./report.ts";
import { Rng } from "./rng.ts";
import { OwnPostgres, OwnRedis } from "./services.ts";
import { verify } from "./verify.ts";
import { newStats, Workload, type Caller, type Role, type TenantModel } from "./workload.ts";

/**
 * npm run chaos (issue 12 point 9; docs/chaos.md): its own PostgreSQL 15 and
 * Redis, many seeded tenants, two replicas of the server under mixed load for
 * CHAOS_DURATION_S (default 600 s) while Redis, PostgreSQL and one replica at
 * a time are restarted at seeded random moments; then the checks against the
 * database, a printed summary, and bench/results/chaos-<stamp>.{json,md}.
 * Exit code 1 when any check failed.
 */

const log = (line: string) => process.stdout.write(`[chaos] ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const DATABASE = "chaos";

async function loadTenants(url: string, opts: ChaosOptions): Promise<TenantModel[]> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    // The noisy tenant of the bench seed keeps a real rate limit: not part of this load.
    const noisy = tenantSlug(opts.tenants);
    const { rows: tenants } = await db.query(`SELECT id::text, slug, plan::text FROM tenants WHERE slug <> $1 ORDER BY slug`, [noisy]);
    const { rows: projects } = await db.query(`SELECT id::text, tenant_id::text FROM projects`);
    const { rows: deployments } = await db.query(
      `SELECT id::text, tenant_id::text FROM (SELECT id, tenant_id, row_number() OVER (PARTITION BY tenant_id ORDER BY created_at DESC) AS n FROM deployments) d WHERE n <= 30`,
    );
    const { rows: members } = await db.query(
      `SELECT m.id::text, m.tenant_id::text, m.role::text, u.email FROM memberships m JOIN users u ON u.id = m.user_id ORDER BY m.created_at`,
    );
    // Every seeded tenant: no limit the load could reach (seats and projects grow during the run).
    await db.query(
      `INSERT INTO tenant_limit_overrides (tenant_id, resource, "limit")
       SELECT t.id, r::"QuotaResource", 1000000000 FROM tenants t CROSS JOIN unnest(ARRAY['SEATS', 'PROJECTS']) AS r WHERE t.slug <> $1
       ON CONFLICT (tenant_id, resource) DO UPDATE SET "limit" = EXCLUDED."limit"`,
      [noisy],
    );
    // API keys need the api_access feature: the FREE tenants of the seed get it too.
    await db.query(`UPDATE tenants SET feature_overrides = '["api_access"]'::jsonb WHERE plan = 'FREE' AND slug <> $1`, [noisy]);
    const out: TenantModel[] = [];
    for (const t of tenants) {
      const model = {
        id: t.id,
        slug: t.slug,
        plan: t.plan,
        projectIds: projects.filter((p) => p.tenant_id === t.id).map((p) => p.id),
        deploymentIds: deployments.filter((p) => p.tenant_id === t.id).map((p) => p.id),
        stable: [] as Caller[],
        transients: [],
        keys: [],
        noKeys: false,
        cursors: [],
      } as unknown as TenantModel;
      for (const m of members.filter((m) => m.tenant_id === t.id)) {
        const token = await signDevToken({ secret: opts.jwtSecret, sub: m.email, tenant: t.slug, ttl: "6h" });
        model.stable.push({
          label: m.email,
          tenant: model,
          kind: "member",
          role: m.role as Role,
          headers: { authorization: `Bearer ${token}` },
          stable: true,
          state: "active",
          membershipId: m.id,
          email: m.email,
        });
      }
      model.owner = model.stable.find((c) => c.role === "OWNER")!;
      out.push(model);
    }
    return out;
  } finally {
    await db.end();
  }
}

async function main() {
  const opts = chaosOptions();
  const workDir = opts.workDir;
  mkdirSync(workDir, { recursive: true });
  const pgServer = new OwnPostgres(path.join(workDir, "pg"), opts.pgPort);
  const redis = new OwnRedis(path.join(workDir, "redis"), opts.redisPort);
  const replicas: Replica[] = [];
  let stopping = false;
  const cleanup = async () => {
    await Promise.allSettled(replicas.map((r) => r.stop()));
    await redis.kill().catch(() => {});
    await pgServer.stop("fast").catch(() => {});
  };
  process.once("SIGINT", () => {
    log("interrupted: stopping the replicas, Redis and PostgreSQL");
    stopping = true;
    void cleanup().then(() => process.exit(130));
  });

  try {
    log(`seed ${opts.seed}, ${opts.durationS} s, ${opts.clients} clients, ${opts.tenants} tenants, faults: ${opts.faults.join(", ")}`);
    log(`own PostgreSQL on ${opts.pgPort}, Redis on ${opts.redisPort}, replicas on ${opts.replicaPorts.join(" and ")}; data and logs under ${workDir}`);
    await pgServer.init();
    await pgServer.start();
    redis.init();
    await redis.start();

    const bench: BenchOptions = {
      databaseUrl: pgServer.url("postgres"),
      redisUrl: redis.url(),
      database: DATABASE,
      runs: 1,
      durationS: 1,
      warmupS: 0,
      connections: 1,
      lowConnections: 1,
      port: opts.replicaPorts[0],
      tenants: opts.tenants,
      projectsPerTenant: opts.projectsPerTenant,
      deploymentsPerProject: opts.deploymentsPerProject,
      workflowsPerTenant: 2,
      noisyLimitPerMinute: 100,
      countRequests: 1,
      only: undefined,
      jwtSecret: opts.jwtSecret,
    };
    const fixture = await seedBenchDatabase(bench, log);
    const tenants = await loadTenants(fixture.url, opts);

    // The bench's server environment (production, no migration or seed at start); the default tier pools (32 connections a replica).
    const env = { ...serverEnv(bench, fixture.url), SHUTDOWN_DRAIN_MS: String(opts.drainMs) };
    for (const [i, port] of opts.replicaPorts.entries()) replicas.push(new Replica(`replica-${"ab"[i]}`, port, env, workDir));
    await Promise.all(replicas.map((r) => r.start()));
    log(`replicas ready (${ROOT})`);

    const stats = newStats();
    // Times of violations and faults count from the start of the load (negative: during the setup).
    const clock = { t0: performance.now() };
    const workload = new Workload({ tenants, replicas, stats, timeoutMs: opts.timeoutMs, jwtSecret: opts.jwtSecret, seed: opts.seed, clock });
    const violate = (kind: string, detail: Record<string, unknown>) =>
      stats.violations.push({ kind, at: Math.round((performance.now() - clock.t0) / 100) / 10, detail });

    // Victims for the revocation checks: per tenant an API key and two invited members.
    const setupRng = new Rng(opts.seed).fork(0x5e7);
    for (let i = 0; i < tenants.length; i += 4) {
      await Promise.all(
        tenants.slice(i, i + 4).map(async (t) => {
          await workload.createKey(setupRng, 0, t);
          await workload.invite(setupRng, 0, t);
          await workload.invite(setupRng, 0, t);
        }),
      );
    }
    log(`victims ready: ${tenants.reduce((n, t) => n + t.keys.length, 0)} API keys, ${tenants.reduce((n, t) => n + t.transients.length, 0)} invited members`);

    // Replicas that exit on their own (not by a SIGTERM of ours) are a finding; they are started again.
    const watchdog = setInterval(() => {
      for (const r of replicas) {
        const proc = r.child?.proc;
        if (r.inRotation && proc && (proc.exitCode !== null || proc.signalCode !== null)) {
          r.inRotation = false;
          violate("replica-exited", { replica: r.name, code: proc.exitCode, signal: proc.signalCode, output: r.child!.output.slice(-5) });
          log(`${r.name} exited on its own (${proc.exitCode ?? proc.signalCode}): starting it again`);
          void r.start().catch((err) => log(`${r.name} restart failed: ${err}`));
        }
      }
    }, 500);
    const snapshots = setInterval(() => void redis.snapshot().catch(() => {}), opts.snapshotEveryS * 1000);

    const plan = planFaults(opts.seed, opts.durationS, opts.faults, opts.faultGapS, opts.downS);
    log(`load for ${opts.durationS} s; ${plan.length} faults planned`);
    const start = performance.now();
    clock.t0 = start;
    const end = start + opts.durationS * 1000;
    const faults: FaultRecord[] = [];
    const faultLoop = (async () => {
      for (const f of plan) {
        const due = start + f.atS * 1000;
        while (performance.now() < due && !stopping) await sleep(Math.min(500, due - performance.now()));
        if (stopping || performance.now() > end) break;
        faults.push(await inject(f, { pg: pgServer, redis, replicas, drainMs: opts.drainMs, log }, (performance.now() - start) / 1000));
      }
    })();
    const base = new Rng(opts.seed);
    let harnessErrors = 0;
    const clients = Array.from({ length: opts.clients }, async (_, i) => {
      const rng = base.fork(i + 1);
      while (performance.now() < end && !stopping) {
        try {
          await workload.step(rng, i + 1);
        } catch (err) {
          harnessErrors++;
          if (harnessErrors <= 5) log(`harness error: ${(err as Error).stack ?? err}`);
        }
        await sleep(rng.between(opts.thinkMs[0], opts.thinkMs[1]));
      }
    });
    const progress = setInterval(() => {
      const n = Object.values(stats.ops).reduce((a, b) => a + b, 0);
      log(`${Math.round((performance.now() - start) / 1000)} s: ${n} requests, ${stats.violations.length} violations so far`);
    }, 30_000);
    await Promise.all(clients);
    clearInterval(progress);
    await faultLoop;
    clearInterval(snapshots);
    clearInterval(watchdog);
    const loadS = (performance.now() - start) / 1000;
    log(`load done after ${loadS.toFixed(0)} s; checking`);

    if (!(await allReady(replicas))) log("replicas not all ready at the end: checking anyway");
    const result = await verify(fixture.url, stats, tenants, violate);
    const unhandled = replicas.reduce((n, r) => n + r.unhandledErrorLines, 0);
    const summary = summarize({ opts, stats, faults, result, loadS, harnessErrors, unhandledErrorLines: unhandled, replicaStarts: replicas.map((r) => r.starts) });
    const files = await writeSummary(summary, path.resolve(ROOT, opts.resultsDir));
    log(`wrote ${files.join(" and ")}`);
    process.exitCode = summary.passed ? 0 : 1;
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
