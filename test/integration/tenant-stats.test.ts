import { randomBytes } from "node:crypto";
import pg from "pg";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { hourStart, RequestCounter } from "../../src/infra/request-counter.ts";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { placementOf, POOLED, type PlacementRef } from "../../src/db/placement-admin.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import type { TestApp } from "../helpers/app.ts";
import { placementApp, sql } from "../helpers/placements.ts";

/**
 * The analytics counters (tenant_stats, issue 15 point 7): exact after
 * inserts, deletes and status changes, concurrent inserts, a rolled-back
 * transaction, a purge and moves, in every placement; written by their
 * triggers only (the app role can neither write them nor call their
 * functions); platform.tenantUsage and totals answer them.
 */

/** Every tenant whose counters row differs from its rows (or is missing), in this database/schema: [] when exact. */
const DRIFT = `
  SELECT slug, counters, actual FROM (
    SELECT t.slug, (to_jsonb(st) - 'tenant_id') || jsonb_build_object('api_requests', rq.api_requests) AS counters, jsonb_build_object(
      'members', (SELECT count(*) FROM memberships x WHERE x.tenant_id = t.id),
      'projects', (SELECT count(*) FROM projects x WHERE x.tenant_id = t.id),
      'workflows', (SELECT count(*) FROM workflows x WHERE x.tenant_id = t.id),
      'deployments', (SELECT count(*) FROM deployments x WHERE x.tenant_id = t.id),
      'deployments_queued', (SELECT count(*) FROM deployments x WHERE x.tenant_id = t.id AND x.status = 'QUEUED'),
      'deployments_building', (SELECT count(*) FROM deployments x WHERE x.tenant_id = t.id AND x.status = 'BUILDING'),
      'deployments_ready', (SELECT count(*) FROM deployments x WHERE x.tenant_id = t.id AND x.status = 'READY'),
      'deployments_error', (SELECT count(*) FROM deployments x WHERE x.tenant_id = t.id AND x.status = 'ERROR'),
      'deployments_canceled', (SELECT count(*) FROM deployments x WHERE x.tenant_id = t.id AND x.status = 'CANCELED'),
      'api_requests', (SELECT coalesce(sum(count), 0) FROM usage_counters x WHERE x.tenant_id = t.id AND x.resource = 'API_REQUESTS_PER_MINUTE')
    ) AS actual
    FROM tenants t LEFT JOIN tenant_stats st ON st.tenant_id = t.id LEFT JOIN tenant_request_totals rq ON rq.tenant_id = t.id) c
  WHERE counters IS DISTINCT FROM actual
  ORDER BY slug`;

const USAGE = `query($first: Int, $orderBy: TenantUsageOrder) { platform {
  tenantUsage(first: $first, orderBy: $orderBy) { totalCount edges { node { tenant { slug } members projects workflows deployments apiRequests deploymentsByStatus { status count } } } }
  totals { tenants members projects deployments apiRequests } } }`;

const MOVE = `mutation($input: MoveTenantInput!) { moveTenant(input: $input) { tenant { placement } } }`;
const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;

describe("tenant_stats: the analytics counters", () => {
  const app = placementApp();
  let t: TestApp;
  let admin: string;
  beforeAll(() => ({ t, admin } = app));

  const drift = (ref: PlacementRef = POOLED) =>
    sql(t.clients.placements.admin.databaseUrl(ref), DRIFT, [], ref.placement === "SCHEMA" ? ref.name! : undefined);

  /** `fn` in one transaction as tenantgraph_app in the tenant (committed unless it throws). */
  async function asApp<T>(tenantId: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const c = new pg.Client({ connectionString: t.db.url });
    await c.connect();
    try {
      await c.query("BEGIN; SET LOCAL ROLE tenantgraph_app");
      await c.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenantId]);
      const out = await fn(c);
      await c.query("COMMIT");
      return out;
    } catch (err) {
      await c.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      await c.end();
    }
  }

  /** The request counter's flush (as src/infra/request-counter.ts calls it, the platform role): `count` for each tenant in each of the last 3 hours. */
  async function flushCounts(tenants: string[], count: number) {
    const hours = [0, 1, 2].map((h) => new Date(hourStart(Date.now()) - h * 3_600_000).toISOString());
    const rows = tenants.flatMap((id) => hours.map((h) => [id, h] as const));
    await t.clients.platform.$queryRaw(
      Prisma.sql`SELECT app_request_counts_flush(${rows.map((r) => r[0])}::uuid[], ${rows.map((r) => r[1])}::timestamptz[], ${rows.map(() => count)}::int[], false)`,
    );
  }

  /** An hourly API request row written directly (not by the flush), the tenant's request total recounted. */
  async function requestRow(id: string, count: number) {
    await sql(t.db.url, `INSERT INTO usage_counters (tenant_id, resource, window_start, count) VALUES ($1, 'API_REQUESTS_PER_MINUTE', date_trunc('hour', now()), $2)`, [id, count]);
    await sql(t.db.url, `SELECT app_tenant_stats_recount($1)`, [id]);
  }

  const tenantId = async (slug: string) => (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } })).id;

  async function provision(slug: string, placement: "POOLED" | "SCHEMA" | "DATABASE") {
    const res = await t.gql(PROVISION, {
      token: admin,
      variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` }, placement } },
    });
    expect(res.body.errors).toBeUndefined();
    const row = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } });
    if (row.placement !== "POOLED") app.made.push(placementOf(row));
    return { id: row.id, owner: await t.token(`owner@${slug}.test`, slug) };
  }

  /** Through the API as the tenant's owner: 3 projects, 2 deployments each moved through statuses, a workflow; one project deleted. */
  async function churn(owner: string) {
    const ok = async (query: string, variables: Record<string, unknown>) => {
      const res = await t.gql(query, { token: owner, variables });
      expect(res.body.errors).toBeUndefined();
      return res.body.data;
    };
    const projects: string[] = [];
    for (let i = 0; i < 3; i++) {
      const d = await ok(`mutation($n: String!) { createProject(input: { name: $n }) { project { id } } }`, { n: `stats ${i} ${Math.random()}` });
      projects.push(d.createProject.project.id);
    }
    for (const projectId of projects) {
      for (let k = 0; k < 2; k++) {
        const d = await ok(`mutation($p: ID!) { createDeployment(input: { projectId: $p }) { deployment { id } } }`, { p: projectId });
        const id = d.createDeployment.deployment.id;
        await ok(`mutation($id: ID!) { updateDeploymentStatus(input: { id: $id, status: BUILDING }) { deployment { id } } }`, { id });
        if (k === 0) await ok(`mutation($id: ID!) { updateDeploymentStatus(input: { id: $id, status: READY }) { deployment { id } } }`, { id });
      }
    }
    await ok(`mutation($p: ID) { createWorkflow(input: { name: "w", projectId: $p }) { workflow { id } } }`, { p: projects[0] });
    // Its deployments go with it (ON DELETE CASCADE): counted down too.
    await ok(`mutation($id: ID!) { deleteProject(input: { id: $id }) { deletedProjectId } }`, { id: projects[2] });
  }

  /** tenantUsage (every page) and totals as the API answers them, by slug. */
  async function analytics() {
    const res = await t.gql(USAGE, { token: admin, variables: { first: 100, orderBy: { field: "DEPLOYMENTS", direction: "DESC" } } });
    expect(res.body.errors).toBeUndefined();
    const usage = res.body.data.platform.tenantUsage;
    expect(usage.edges.length).toBe(usage.totalCount);
    return { bySlug: new Map(usage.edges.map((e: any) => [e.node.tenant.slug, e.node])) as Map<string, any>, totals: res.body.data.platform.totals };
  }

  /** What tenantUsage must say of a tenant: its rows counted where they are (members and requests: the main database). */
  async function expected(id: string, ref: PlacementRef) {
    const url = t.clients.placements.admin.databaseUrl(ref);
    const s = ref.placement === "SCHEMA" ? `"${ref.name}".` : "";
    const [data] = await sql<{ projects: number; workflows: number; deployments: number; ready: number; building: number }>(
      url,
      `SELECT (SELECT count(*)::int FROM ${s}projects WHERE tenant_id = $1) AS projects, (SELECT count(*)::int FROM ${s}workflows WHERE tenant_id = $1) AS workflows,
              (SELECT count(*)::int FROM ${s}deployments WHERE tenant_id = $1) AS deployments,
              (SELECT count(*)::int FROM ${s}deployments WHERE tenant_id = $1 AND status = 'READY') AS ready,
              (SELECT count(*)::int FROM ${s}deployments WHERE tenant_id = $1 AND status = 'BUILDING') AS building`,
      [id],
    );
    const [main] = await sql<{ members: number }>(t.db.url, `SELECT count(*)::int AS members FROM memberships WHERE tenant_id = $1`, [id]);
    return { ...data!, members: main!.members };
  }

  it("POOLED: exact after inserts, status changes and deletes through the API, bulk statements, request counts and a rolled-back transaction", async () => {
    const { id, owner } = await provision("stats-pooled", "POOLED");
    await churn(owner);
    // Bulk, several tenants in one statement (the platform path), and the request counter's flush (GREATEST merge: UPDATEs too).
    const acme = await tenantId("acme");
    await sql(t.db.url, `INSERT INTO workflows (tenant_id, name) SELECT x, 'bulk ' || i FROM unnest($1::uuid[]) x, generate_series(1, 4) i`, [[id, acme]]);
    await flushCounts([id, acme], 7);
    await flushCounts([id, acme], 11);
    await flushCounts([id, acme], 5);
    // Another quota resource is not an API request.
    await sql(t.db.url, `INSERT INTO usage_counters (tenant_id, resource, window_start, count) VALUES ($1, 'DEPLOYMENTS_PER_HOUR', now(), 40)`, [id]);
    // Rolled back: its rows and its counts both.
    await expect(
      asApp(id, async (c) => {
        await c.query(`INSERT INTO projects (tenant_id, name, slug) VALUES (app_current_tenant(), 'gone', 'gone')`);
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    const [stats] = await sql<Record<string, string | number>>(
      t.db.url,
      `SELECT st.*, rq.api_requests FROM tenant_stats st JOIN tenant_request_totals rq USING (tenant_id) WHERE tenant_id = $1`,
      [id],
    );
    expect(stats).toMatchObject({ projects: 2, workflows: 5, deployments: 4, deployments_ready: 2, deployments_building: 2, api_requests: "33" });
    expect(await drift()).toEqual([]);

    const { bySlug, totals } = await analytics();
    const mine = bySlug.get("stats-pooled");
    const want = await expected(id, POOLED);
    expect(mine).toMatchObject({ members: want.members, projects: 2, workflows: 5, deployments: 4, apiRequests: 33 });
    expect(mine.deploymentsByStatus).toContainEqual({ status: "READY", count: 2 });
    const [all] = await sql<{ members: number; projects: number; deployments: number; api: number }>(
      t.db.url,
      `SELECT (SELECT count(*)::int FROM memberships) AS members, (SELECT count(*)::int FROM projects) AS projects,
              (SELECT count(*)::int FROM deployments) AS deployments,
              (SELECT coalesce(sum(count), 0)::int FROM usage_counters WHERE resource = 'API_REQUESTS_PER_MINUTE') AS api`,
    );
    // No other test of this file has placed tenants' data rows outside the main database yet, or the sums differ by theirs.
    const placed = await t.clients.platform.tenant.count({ where: { placement: { not: "POOLED" } } });
    if (placed === 0) expect(totals).toMatchObject({ members: all!.members, projects: all!.projects, deployments: all!.deployments, apiRequests: all!.api });
    expect(totals.apiRequests).toBe(all!.api);
    expect(totals.members).toBe(all!.members);
  });

  it("concurrent inserts and status changes of one tenant (and of others) keep the counters exact", async () => {
    const { id } = await provision("stats-busy", "POOLED");
    const other = await tenantId("globex");
    const [project] = await sql<{ id: string }>(t.db.url, `INSERT INTO projects (tenant_id, name, slug) VALUES ($1, 'busy', 'busy') RETURNING id`, [id]);
    const [otherProject] = await sql<{ id: string }>(
      t.db.url,
      `INSERT INTO projects (tenant_id, name, slug) VALUES ($1, 'busy-other', 'busy-other') RETURNING id`,
      [other],
    );
    const insert = (tenant: string, projectId: string, n: number) =>
      asApp(tenant, (c) =>
        c.query(
          `INSERT INTO deployments (tenant_id, project_id, status) SELECT app_current_tenant(), $1, (ARRAY['QUEUED','READY','ERROR'])[1 + i % 3]::"DeploymentStatus" FROM generate_series(1, $2::int) i`,
          [projectId, n],
        ),
      );
    const flip = () =>
      asApp(id, (c) => c.query(`UPDATE deployments SET status = 'CANCELED' WHERE tenant_id = app_current_tenant() AND status = 'QUEUED' AND id IN (SELECT id FROM deployments WHERE status = 'QUEUED' LIMIT 3)`));
    // And multi-tenant statements (locking several counter rows) at the same time.
    const bulk = () => sql(t.db.url, `INSERT INTO workflows (tenant_id, name) SELECT x, 'concurrent' FROM unnest($1::uuid[]) x`, [[other, id]]);
    await Promise.all([
      ...Array.from({ length: 8 }, (_, i) => insert(id, project!.id, 5 + i)),
      ...Array.from({ length: 3 }, () => insert(other, otherProject!.id, 4)),
      ...Array.from({ length: 3 }, () => flip()),
      ...Array.from({ length: 3 }, () => bulk()),
    ]);
    const [stats] = await sql<{ deployments: number; workflows: number }>(t.db.url, `SELECT deployments, workflows FROM tenant_stats WHERE tenant_id = $1`, [id]);
    expect(stats).toEqual({ deployments: 8 * 5 + 28, workflows: 3 });
    expect(await drift()).toEqual([]);
  });

  it("the app role reads its own tenant's counters only, and can neither write them nor call their functions; the platform role only reads", async () => {
    const acme = await tenantId("acme");
    const globex = await tenantId("globex");
    expect(await asApp(acme, async (c) => (await c.query(`SELECT tenant_id FROM tenant_stats`)).rows)).toEqual([{ tenant_id: acme }]);
    const attempts = [
      `UPDATE tenant_stats SET deployments = deployments + 1000`,
      `INSERT INTO tenant_stats (tenant_id, deployments) VALUES ('${globex}', 5)`,
      `DELETE FROM tenant_stats`,
      `SELECT app_tenant_stats_recount('${globex}')`,
      `SELECT app_tenant_stats_add(ARRAY[ROW('${acme}', 0, 0, 0, 1000, 0, 0, 0, 0, 0)::tenant_stats])`,
      `UPDATE tenant_request_totals SET api_requests = api_requests + 1000`,
      `SELECT app_request_counts_flush(ARRAY['${acme}']::uuid[], ARRAY[now()], ARRAY[1000], false)`,
    ];
    for (const statement of attempts) {
      await expect(asApp(acme, (c) => c.query(statement)), statement).rejects.toMatchObject({ code: "42501" });
    }
    const c = new pg.Client({ connectionString: t.db.url });
    await c.connect();
    try {
      await c.query("BEGIN; SET LOCAL ROLE tenantgraph_platform");
      expect((await c.query(`SELECT count(*)::int AS n FROM tenant_stats`)).rows[0].n).toBeGreaterThan(1);
      for (const statement of [`UPDATE tenant_stats SET projects = 0`, `UPDATE tenant_request_totals SET api_requests = 0`]) {
        await c.query("SAVEPOINT s");
        await expect(c.query(statement), statement).rejects.toMatchObject({ code: "42501" });
        await c.query("ROLLBACK TO SAVEPOINT s");
      }
    } finally {
      await c.query("ROLLBACK").catch(() => {});
      await c.end();
    }
    expect(await drift()).toEqual([]);
  });

  it("purgeTenant takes the tenant's counters with it; the others stay exact", async () => {
    const { id, owner } = await provision("stats-purged", "POOLED");
    await churn(owner);
    const gid = toGlobalId("Tenant", id);
    expect((await t.gql(`mutation($id: ID!) { scheduleTenantDeletion(input: { tenantId: $id }) { tenant { status } } }`, { token: admin, variables: { id: gid } })).body.errors).toBeUndefined();
    expect((await t.gql(`mutation($id: ID!) { purgeTenant(input: { tenantId: $id }) { purgedTenantId } }`, { token: admin, variables: { id: gid } })).body.errors).toBeUndefined();
    expect(await sql(t.db.url, `SELECT * FROM tenant_stats WHERE tenant_id = $1`, [id])).toEqual([]);
    expect(await drift()).toEqual([]);
  });

  it("SCHEMA and DATABASE tenants: exact counters in their placement, and tenantUsage answers their real counts", async () => {
    const placed = [await provision("stats-schema", "SCHEMA"), await provision("stats-db", "DATABASE")];
    for (const p of placed) await churn(p.owner);
    const { bySlug } = await analytics();
    for (const [slug, p] of [["stats-schema", placed[0]!], ["stats-db", placed[1]!]] as const) {
      const ref = placementOf(await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: p.id } }));
      expect(await drift(ref)).toEqual([]);
      if (ref.placement === "SCHEMA") {
        // Every function of the counters lives in the placement's schema, pinned to it (temporary objects last).
        const fns = await sql<{ name: string; cfg: string[] }>(
          t.db.url,
          `SELECT proname AS name, proconfig AS cfg FROM pg_proc WHERE pronamespace = $1::regnamespace AND proname ~ '^app_(tenant_stats|request_counts|refuse_tenant)' ORDER BY 1`,
          [ref.name],
        );
        expect(fns.map((f) => f.name)).toEqual(["app_refuse_tenant_change", "app_request_counts_flush", "app_tenant_stats_add", "app_tenant_stats_deployments", "app_tenant_stats_new_tenants", "app_tenant_stats_recount", "app_tenant_stats_rows", "app_tenant_stats_truncated"]);
        for (const f of fns) expect(f.cfg, f.name).toContain(`search_path=${ref.name}, pg_temp`);
      }
      const want = await expected(p.id, ref);
      expect(want).toMatchObject({ projects: 2, deployments: 4, ready: 2, building: 2, workflows: 1 });
      expect(bySlug.get(slug)).toMatchObject({ members: want.members, projects: 2, workflows: 1, deployments: 4 });
      expect(bySlug.get(slug).deploymentsByStatus).toContainEqual({ status: "BUILDING", count: 2 });
    }
    // The main database's counters of a placed tenant: its directory rows only (no data rows there).
    expect(await drift()).toEqual([]);
  });

  it("moves POOLED -> SCHEMA -> DATABASE -> POOLED leave exact counters at the target and in the main database, and writes after each move count there", async () => {
    const { id, owner } = await provision("stats-moved", "POOLED");
    await churn(owner);
    const gid = toGlobalId("Tenant", id);
    for (const placement of ["SCHEMA", "DATABASE", "POOLED"] as const) {
      const res = await t.gql(MOVE, { token: admin, variables: { input: { tenantId: gid, placement } } });
      expect(res.body.errors).toBeUndefined();
      const row = await t.clients.platform.tenant.findUniqueOrThrow({ where: { id } });
      const ref = placementOf(row);
      if (ref.placement !== "POOLED") app.made.push(ref);
      // Copied rows counted once (recounted at the target, never copied nor counted twice by triggers).
      expect(await drift(ref)).toEqual([]);
      expect(await drift()).toEqual([]);
      // New writes in the new placement are counted by its triggers.
      await churn(owner);
      expect(await drift(ref)).toEqual([]);
      const want = await expected(id, ref);
      const { bySlug } = await analytics();
      expect(bySlug.get("stats-moved")).toMatchObject({ members: want.members, projects: want.projects, workflows: want.workflows, deployments: want.deployments });
    }
    expect(await drift()).toEqual([]);
  }, 120_000);

  // Locks (migration 20261202007000_tenant_stats_locks, the review of 20b69ef):
  // no statement covering many tenants waits for, or holds, a row a tenant's
  // transaction locks.

  /** Connections left open by a test (transactions in flight): rolled back and closed after it. */
  const open: pg.Client[] = [];
  afterEach(async () => {
    for (const c of open.splice(0)) {
      await c.query("ROLLBACK").catch(() => {});
      await c.end().catch(() => {});
    }
  });
  /** An open transaction (as `role`: the app role in `tenantId`, as a mutation runs; the platform role; or the owner). */
  async function begin(role: "app" | "platform" | "owner", tenantId?: string): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: t.db.url });
    c.on("error", () => {});
    await c.connect();
    open.push(c);
    await c.query("BEGIN");
    if (role === "app") await c.query(`SET LOCAL ROLE tenantgraph_app; SELECT set_config('app.tenant_id', '${tenantId}', true)`);
    if (role === "platform") await c.query("SET LOCAL ROLE tenantgraph_platform");
    return c;
  }
  const newProject = (c: pg.Client) =>
    c.query(`INSERT INTO projects (tenant_id, name, slug) VALUES (app_current_tenant(), 'p', $1)`, [randomBytes(6).toString("hex")]);

  /** Fresh tenants (a project, a READY deployment and a workflow each), their ids in ascending order. */
  async function freshTenants(n: number, status = "ACTIVE"): Promise<string[]> {
    const ids = Array.from({ length: n }, (_, i) => `${String(i).repeat(8)}-0000-4000-8000-${randomBytes(6).toString("hex")}`);
    for (const id of ids) {
      await sql(t.db.url, `INSERT INTO tenants (id, slug, name, status) VALUES ($1, $2, $2, $3)`, [id, `locks-${randomBytes(5).toString("hex")}`, status]);
      const [p] = await sql<{ id: string }>(t.db.url, `INSERT INTO projects (tenant_id, name, slug) VALUES ($1, 'p', $2) RETURNING id`, [id, `p-${id}`]);
      await sql(t.db.url, `INSERT INTO deployments (tenant_id, project_id, status) VALUES ($1, $2, 'READY')`, [id, p!.id]);
      await sql(t.db.url, `INSERT INTO workflows (tenant_id, project_id, name) VALUES ($1, $2, $3)`, [id, p!.id, `w-${id}`]);
    }
    return ids;
  }

  /** Backends of this database waiting on a lock. */
  const lockWaiters = async () =>
    (await sql<{ pid: number }>(t.db.url, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).map((r) => r.pid);
  /** `work`'s result, provided no backend (but those of `waitingBefore`) waited on a lock until it settled; throws as soon as one does. */
  async function withoutWaiting<T>(work: Promise<T>, waitingBefore: number[] = []): Promise<T> {
    let settled = false;
    work.then(
      () => (settled = true),
      () => (settled = true),
    );
    while (!settled) {
      const waiting = (await lockWaiters()).filter((pid) => !waitingBefore.includes(pid));
      if (waiting.length && !settled) throw new Error(`backends ${waiting.join(", ")} wait on a lock`);
    }
    return work;
  }
  /** Until a backend (not of `before`) waits on a lock: its pids. */
  async function untilWaiting(before: number[]): Promise<number[]> {
    for (;;) {
      const waiting = (await lockWaiters()).filter((pid) => !before.includes(pid));
      if (waiting.length) return waiting;
    }
  }

  const HOUR = 3_600_000;
  /** Request counters as replicas run them, on one shared store, in hours of their own (`clock.at`). */
  function replicas(n: number) {
    const clock = { at: Date.UTC(2025, 0, 1, 10) };
    const made = Array.from({ length: n }, () => new RequestCounter({ db: t.clients.platform, store: t.store, now: () => clock.at }));
    return { clock, made };
  }
  const apiTotal = async (id: string) =>
    Number((await sql<{ n: string }>(t.db.url, `SELECT api_requests AS n FROM tenant_request_totals WHERE tenant_id = $1`, [id]))[0]?.n);

  it("H1/M1: the request flush never waits for a tenant's open mutation (so never makes another tenant wait for it), and crossing flushes of two replicas neither wait nor deadlock", async () => {
    const [a, b] = (await freshTenants(2)) as [string, string];
    const { clock, made } = replicas(2);
    const [r1, r2] = made as [RequestCounter, RequestCounter];
    const h0 = clock.at;
    const h1 = h0 - HOUR;
    // Each replica's first flush sweeps the store (restart); rows at h1 that the next flushes UPDATE.
    clock.at = h1;
    await r1.record(a, 1);
    await r1.record(b, 1);
    await r1.flush();
    await r2.flush();
    // Both tenants have a mutation in flight that wrote counted rows (their counter rows locked until COMMIT).
    const holdA = await begin("app", a);
    await newProject(holdA);
    const holdB = await begin("app", b);
    await newProject(holdB);
    // r2: a's h1 row updated, b's h0 row inserted; r1 the other way round (two replicas at an hour boundary).
    clock.at = h1;
    await r2.record(a, 4);
    await r1.record(b, 5);
    clock.at = h0;
    await r2.record(b, 5);
    await r1.record(a, 6);
    await withoutWaiting(Promise.all([r1.flush(), r2.flush(), r1.flush(), r2.flush()]));
    // a's next mutation writes at once while b's is still open (before: a flush held a's row, waiting for b's COMMIT).
    await holdA.query("COMMIT");
    const writerA = await begin("app", a);
    await writerA.query(`SET LOCAL lock_timeout = '1500ms'`);
    await newProject(writerA);
    await writerA.query("COMMIT");
    await holdB.query("COMMIT");
    // What one replica skipped while the other held the tenant's total, one after the other.
    await r1.flush();
    await r2.flush();
    expect({ a: await apiTotal(a), b: await apiTotal(b) }).toEqual({ a: 5 + 6, b: 6 + 5 });
    expect(await drift()).toEqual([]);
  });

  it("a flush skips (never waits for) a tenant whose request total another transaction holds, and writes it at the next flush", async () => {
    const [a, b] = (await freshTenants(2)) as [string, string];
    const { clock, made } = replicas(1);
    const [r] = made as [RequestCounter];
    clock.at -= 5 * HOUR;
    await r.flush();
    const holder = await begin("owner");
    await holder.query(`SELECT 1 FROM tenant_request_totals WHERE tenant_id = $1 FOR NO KEY UPDATE`, [b]);
    await r.record(a, 2);
    await r.record(b, 3);
    expect(await withoutWaiting(r.flush())).toBe(1);
    expect({ a: await apiTotal(a), b: await apiTotal(b) }).toEqual({ a: 2, b: 0 });
    await holder.query("ROLLBACK");
    expect(await r.flush()).toBe(1);
    expect({ a: await apiTotal(a), b: await apiTotal(b) }).toEqual({ a: 2, b: 3 });
    expect(await drift()).toEqual([]);
  });

  it("M2: purgeTenant and a flush of the same tenant neither deadlock nor wait for each other (the purge takes the request total first)", async () => {
    const [x] = (await freshTenants(1, "PENDING_DELETION")) as [string];
    const { clock, made } = replicas(1);
    const [r] = made as [RequestCounter];
    clock.at -= 8 * HOUR;
    await r.record(x, 1);
    await r.flush();
    // The purge is held at its API keys, after its counted rows (whose counters row it then holds to its COMMIT).
    await sql(t.db.url, `INSERT INTO api_keys (tenant_id, name, role, prefix, secret_hash) VALUES ($1, 'k', 'ADMIN', 'tg_held', $2)`, [x, randomBytes(16).toString("hex")]);
    const hold = await begin("owner");
    await hold.query(`SELECT 1 FROM api_keys WHERE tenant_id = $1 FOR UPDATE`, [x]);
    const before = await lockWaiters();
    const purge = t.gql(`mutation($id: ID!) { purgeTenant(input: { tenantId: $id }) { purgedTenantId } }`, {
      token: admin,
      variables: { id: toGlobalId("Tenant", x) },
    });
    const purgeWaits = await untilWaiting(before);
    // Requests of the tenant meanwhile: the flush skips it (the purge holds its total), waiting for nothing
    // (before: the flush took the tenant's request row and waited for its counters row; the purge, for that request row: 40P01).
    await r.record(x, 5);
    expect(await withoutWaiting(r.flush(), [...before, ...purgeWaits])).toBe(0);
    await hold.query("ROLLBACK");
    expect((await purge).body.errors).toBeUndefined();
    // Purged: the next flush drops it.
    expect(await r.flush()).toBe(0);
    expect(await sql(t.db.url, `SELECT 1 FROM usage_counters WHERE tenant_id = $1 UNION ALL SELECT 1 FROM tenant_request_totals WHERE tenant_id = $1`, [x])).toEqual([]);
    expect(await drift()).toEqual([]);
  });

  it("L1: a row never moves to another tenant and a tenant never changes id (the statement fails, the counters stay exact); the app role still meets RLS first", async () => {
    const [x, y] = (await freshTenants(2)) as [string, string];
    await requestRow(x, 4);
    const [m] = await sql<{ id: string }>(t.db.url, `SELECT id FROM users LIMIT 1`);
    await sql(t.db.url, `INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'VIEWER')`, [x, m!.id]);
    const moves = [
      `UPDATE projects SET tenant_id = '${y}' WHERE tenant_id = '${x}'`,
      `UPDATE workflows SET tenant_id = '${y}', project_id = NULL WHERE tenant_id = '${x}'`,
      `UPDATE memberships SET tenant_id = '${y}' WHERE tenant_id = '${x}'`,
      `UPDATE usage_counters SET tenant_id = '${y}' WHERE tenant_id = '${x}'`,
      `UPDATE tenants SET id = gen_random_uuid() WHERE id = '${x}'`,
    ];
    for (const role of ["platform", "owner"] as const) {
      for (const statement of moves) {
        const c = await begin(role);
        await expect(c.query(statement), `${role}: ${statement}`).rejects.toMatchObject({ code: "23001" });
      }
    }
    const app = await begin("app", x);
    await expect(app.query(moves[0]!)).rejects.toMatchObject({ code: "42501" });
    // Changing other columns, or setting tenant_id to itself, is no move.
    await sql(t.db.url, `UPDATE projects SET tenant_id = tenant_id, name = 'renamed' WHERE tenant_id = $1`, [x]);
    expect(await drift()).toEqual([]);
  });

  it("L2: TRUNCATE of a counted table zeroes its counters", async () => {
    const [x] = (await freshTenants(1)) as [string];
    await requestRow(x, 2);
    const owner = await begin("owner");
    // The counters first: TRUNCATE is maintenance, and a writer holding a counters row while it waits for the truncated table would deadlock with it.
    await owner.query(`LOCK TABLE tenant_stats IN EXCLUSIVE MODE`);
    const counters = async () => (await owner.query(`SELECT projects, workflows, deployments FROM tenant_stats WHERE tenant_id = $1`, [x])).rows[0];
    await owner.query(`TRUNCATE workflows`);
    expect(await counters()).toEqual({ projects: 1, workflows: 0, deployments: 1 });
    await owner.query(`TRUNCATE projects CASCADE`);
    expect(await counters()).toEqual({ projects: 0, workflows: 0, deployments: 0 });
    await owner.query(`TRUNCATE usage_counters, memberships`);
    expect((await owner.query(DRIFT)).rows).toEqual([]);
  });

  it("P1: a deployments UPDATE that changes no status takes no lock on the counters row; one that does, does", async () => {
    const [x] = (await freshTenants(1)) as [string];
    const writer = await begin("app", x);
    await writer.query(`UPDATE deployments SET url = 'https://p1.test' WHERE tenant_id = app_current_tenant()`);
    const probe = async () => {
      const c = await begin("owner");
      try {
        await c.query(`SELECT 1 FROM tenant_stats WHERE tenant_id = $1 FOR NO KEY UPDATE NOWAIT`, [x]);
      } finally {
        await c.query("ROLLBACK");
      }
    };
    await probe();
    await writer.query(`UPDATE deployments SET status = 'ERROR' WHERE tenant_id = app_current_tenant()`);
    await expect(probe()).rejects.toMatchObject({ code: "55P03" });
    await writer.query("COMMIT");
    const [st] = await sql(t.db.url, `SELECT deployments, deployments_ready, deployments_error FROM tenant_stats WHERE tenant_id = $1`, [x]);
    expect(st).toEqual({ deployments: 1, deployments_ready: 0, deployments_error: 1 });
    expect(await drift()).toEqual([]);
  });
});
