import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
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
    SELECT t.slug, to_jsonb(st) - 'tenant_id' AS counters, jsonb_build_object(
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
    FROM tenants t LEFT JOIN tenant_stats st ON st.tenant_id = t.id) c
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
    // Bulk, several tenants in one statement (the platform path), and the request counter's upsert (GREATEST merge: UPDATEs too).
    const acme = await tenantId("acme");
    await sql(t.db.url, `INSERT INTO workflows (tenant_id, name) SELECT x, 'bulk ' || i FROM unnest($1::uuid[]) x, generate_series(1, 4) i`, [[id, acme]]);
    const upsert = `INSERT INTO usage_counters (tenant_id, resource, window_start, count)
      SELECT x, 'API_REQUESTS_PER_MINUTE', date_trunc('hour', now()) - h * interval '1 hour', $2::int FROM unnest($1::uuid[]) x, generate_series(0, 2) h
      ON CONFLICT (tenant_id, resource, window_start) DO UPDATE SET count = GREATEST(usage_counters.count, EXCLUDED.count)`;
    await sql(t.db.url, upsert, [[id, acme], 7]);
    await sql(t.db.url, upsert, [[id, acme], 11]);
    await sql(t.db.url, upsert, [[id, acme], 5]);
    // Another quota resource is not an API request.
    await sql(t.db.url, `INSERT INTO usage_counters (tenant_id, resource, window_start, count) VALUES ($1, 'DEPLOYMENTS_PER_HOUR', now(), 40)`, [id]);
    // Rolled back: its rows and its counts both.
    await expect(
      asApp(id, async (c) => {
        await c.query(`INSERT INTO projects (tenant_id, name, slug) VALUES (app_current_tenant(), 'gone', 'gone')`);
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    const [stats] = await sql<Record<string, string | number>>(t.db.url, `SELECT * FROM tenant_stats WHERE tenant_id = $1`, [id]);
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
      `SELECT app_tenant_stats_add(ARRAY[ROW('${acme}', 0, 0, 0, 1000, 0, 0, 0, 0, 0, 0)::tenant_stats])`,
    ];
    for (const statement of attempts) {
      await expect(asApp(acme, (c) => c.query(statement)), statement).rejects.toMatchObject({ code: "42501" });
    }
    const c = new pg.Client({ connectionString: t.db.url });
    await c.connect();
    try {
      await c.query("BEGIN; SET LOCAL ROLE tenantgraph_platform");
      expect((await c.query(`SELECT count(*)::int AS n FROM tenant_stats`)).rows[0].n).toBeGreaterThan(1);
      await expect(c.query(`UPDATE tenant_stats SET projects = 0`)).rejects.toMatchObject({ code: "42501" });
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
  });
});
