import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { createSqlCounter, ofPool, summarize } from "../helpers/sql-counter.ts";

/**
 * Issue 6 point 1: tenantUsage and totals are aggregate SQL over all tenants
 * and match direct counts on seeded data of several tenants; each analytics
 * query is a fixed number of statements, whatever the number of tenants.
 */

const USAGE = `query Usage($first: Int, $after: String, $orderBy: TenantUsageOrder, $from: DateTime, $to: DateTime) {
  platform { tenantUsage(first: $first, after: $after, orderBy: $orderBy, from: $from, to: $to) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { tenant { id slug } members projects deployments workflows apiRequests deploymentsByStatus { status count } } }
  } }
}`;

const TOTALS = `query Totals($from: DateTime, $to: DateTime) { platform { totals(from: $from, to: $to) {
  tenants tenantsByPlan { plan count } tenantsByStatus { status count } members projects deployments apiRequests } } }`;

describe("platform analytics", () => {
  let t: TestApp;
  let owner: pg.Client;
  let token: string;

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    token = await t.adminToken();
    owner = new pg.Client({ connectionString: t.db.url });
    await owner.connect();
    // Three more tenants with uneven data, one suspended, plus old deployments for the time range.
    await owner.query(`
      INSERT INTO tenants (slug, name, plan, status)
      SELECT 'extra-' || i, 'Extra ' || i, (ARRAY['FREE','PRO','ENTERPRISE'])[1 + i % 3]::"Plan",
             CASE WHEN i = 2 THEN 'SUSPENDED' ELSE 'ACTIVE' END::"TenantStatus"
      FROM generate_series(1, 3) i`);
    await owner.query(`
      INSERT INTO projects (tenant_id, name, slug)
      SELECT t.id, 'p' || i, 'p' || i FROM tenants t, generate_series(1, 4) i WHERE t.slug LIKE 'extra-%'`);
    await owner.query(`
      INSERT INTO deployments (tenant_id, project_id, status, created_at)
      SELECT p.tenant_id, p.id, (ARRAY['QUEUED','BUILDING','READY','ERROR','CANCELED'])[1 + i % 5]::"DeploymentStatus",
             now() - (i % 3) * interval '40 days'
      FROM projects p JOIN tenants t ON t.id = p.tenant_id, generate_series(1, length(t.slug) + 3) i
      WHERE t.slug LIKE 'extra-%'`);
    await owner.query(`
      INSERT INTO usage_counters (tenant_id, resource, window_start, count)
      SELECT t.id, 'API_REQUESTS_PER_MINUTE', date_trunc('hour', now()) - h * interval '1 hour', 10 * h + 1
      FROM tenants t, generate_series(0, 5) h`);
    // Request rows written directly, not by the request counter's flush: the tenants' request totals recounted.
    await owner.query(`SELECT count(app_tenant_stats_recount(id)) FROM tenants`);
  });
  afterAll(async () => {
    await owner?.end();
    await t?.close();
    await t?.store.close();
  });

  /** The same numbers, counted directly by the table owner. */
  async function direct(from?: Date, to?: Date) {
    const range = (col: string) =>
      `${from ? ` AND ${col} >= '${from.toISOString()}'` : ""}${to ? ` AND ${col} < '${to.toISOString()}'` : ""}`;
    const { rows } = await owner.query(`
      SELECT t.id, t.slug,
        (SELECT count(*) FROM memberships m WHERE m.tenant_id = t.id)::int AS members,
        (SELECT count(*) FROM projects p WHERE p.tenant_id = t.id)::int AS projects,
        (SELECT count(*) FROM deployments d WHERE d.tenant_id = t.id ${range("d.created_at")})::int AS deployments,
        (SELECT count(*) FROM workflows w WHERE w.tenant_id = t.id)::int AS workflows,
        (SELECT coalesce(sum(count), 0) FROM usage_counters u WHERE u.tenant_id = t.id
           AND u.resource = 'API_REQUESTS_PER_MINUTE' ${range("u.window_start")})::int AS api_requests,
        (SELECT json_object_agg(status, n) FROM (SELECT status, count(*)::int n FROM deployments d
           WHERE d.tenant_id = t.id ${range("d.created_at")} GROUP BY status) s) AS by_status
      FROM tenants t ORDER BY t.slug`);
    return rows;
  }

  async function allUsage(variables: Record<string, unknown> = {}) {
    const nodes: any[] = [];
    let after: string | null = null;
    for (;;) {
      const res: any = await t.gql(USAGE, { token, variables: { ...variables, first: 2, after } });
      expect(res.body.errors).toBeUndefined();
      const conn = res.body.data.platform.tenantUsage;
      expect(conn.totalCount).toBe(6);
      nodes.push(...conn.edges.map((e: any) => e.node));
      if (!conn.pageInfo.hasNextPage) break;
      after = conn.pageInfo.endCursor;
    }
    return nodes;
  }

  it("tenantUsage matches direct counts for every tenant (paged through)", async () => {
    const expected = await direct();
    const nodes = await allUsage();
    expect(nodes).toHaveLength(expected.length);
    const bySlug = new Map(nodes.map((n) => [n.tenant.slug, n]));
    for (const row of expected) {
      const n = bySlug.get(row.slug);
      expect(n, row.slug).toBeDefined();
      expect({ members: n.members, projects: n.projects, deployments: n.deployments, workflows: n.workflows, apiRequests: n.apiRequests }).toEqual({
        members: row.members,
        projects: row.projects,
        deployments: row.deployments,
        workflows: row.workflows,
        apiRequests: row.api_requests,
      });
      const statusCounts = Object.fromEntries(n.deploymentsByStatus.map((s: any) => [s.status, s.count]));
      for (const status of ["QUEUED", "BUILDING", "READY", "ERROR", "CANCELED"]) {
        expect(statusCounts[status], `${row.slug} ${status}`).toBe(row.by_status?.[status] ?? 0);
      }
    }
  });

  it("from/to bound deployments and API requests", async () => {
    const from = new Date(Date.now() - 30 * 24 * 3600_000);
    const to = new Date(Date.now() - 2 * 3600_000);
    const expected = await direct(from, to);
    const nodes = await allUsage({ from: from.toISOString(), to: to.toISOString() });
    const bySlug = new Map(nodes.map((n) => [n.tenant.slug, n]));
    for (const row of expected) {
      expect(bySlug.get(row.slug).deployments, row.slug).toBe(row.deployments);
      expect(bySlug.get(row.slug).apiRequests, row.slug).toBe(row.api_requests);
    }
    // The window really cut something.
    const all = await direct();
    expect(expected.reduce((s, r) => s + r.deployments, 0)).toBeLessThan(all.reduce((s, r) => s + r.deployments, 0));
  });

  it("orderBy sorts by the metric, with stable keyset pages", async () => {
    const nodes = await allUsage({ orderBy: { field: "DEPLOYMENTS", direction: "DESC" } });
    const counts = nodes.map((n) => n.deployments);
    expect(counts).toEqual([...counts].sort((a, b) => b - a));
    expect(new Set(nodes.map((n) => n.tenant.id)).size).toBe(6);
    const asc = await allUsage({ orderBy: { field: "PROJECTS", direction: "ASC" } });
    expect(asc.map((n) => n.projects)).toEqual([...asc.map((n) => n.projects)].sort((a, b) => a - b));
  });

  it("a cursor of another order is refused", async () => {
    const first: any = await t.gql(USAGE, { token, variables: { first: 1 } });
    const cursor = first.body.data.platform.tenantUsage.pageInfo.endCursor;
    const res = await t.gql(USAGE, { token, variables: { first: 1, after: cursor, orderBy: { field: "MEMBERS", direction: "DESC" } } });
    expect(res.body.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
  });

  it("totals match direct counts", async () => {
    const res = await t.gql(TOTALS, { token });
    expect(res.body.errors).toBeUndefined();
    const totals = res.body.data.platform.totals;
    const { rows } = await owner.query(`SELECT
      (SELECT count(*) FROM tenants)::int AS tenants,
      (SELECT count(*) FROM memberships)::int AS members,
      (SELECT count(*) FROM projects)::int AS projects,
      (SELECT count(*) FROM deployments)::int AS deployments,
      (SELECT sum(count) FROM usage_counters WHERE resource = 'API_REQUESTS_PER_MINUTE')::int AS api_requests,
      (SELECT json_object_agg(plan, n) FROM (SELECT plan, count(*)::int n FROM tenants GROUP BY plan) x) AS by_plan,
      (SELECT json_object_agg(status, n) FROM (SELECT status, count(*)::int n FROM tenants GROUP BY status) x) AS by_status`);
    const r = rows[0];
    expect(totals).toMatchObject({ tenants: r.tenants, members: r.members, projects: r.projects, deployments: r.deployments, apiRequests: r.api_requests });
    expect(Object.fromEntries(totals.tenantsByPlan.map((p: any) => [p.plan, p.count]))).toEqual({ FREE: r.by_plan.FREE ?? 0, PRO: r.by_plan.PRO ?? 0, ENTERPRISE: r.by_plan.ENTERPRISE ?? 0 });
    expect(Object.fromEntries(totals.tenantsByStatus.map((p: any) => [p.status, p.count]))).toEqual({
      ACTIVE: r.by_status.ACTIVE ?? 0,
      SUSPENDED: r.by_status.SUSPENDED ?? 0,
      PENDING_DELETION: r.by_status.PENDING_DELETION ?? 0,
    });
  });

  it("tenants: filter by status, plan and search", async () => {
    const q = `query T($filter: TenantFilter) { platform { tenants(first: 50, filter: $filter) { totalCount edges { node { slug status plan } } } } }`;
    const suspended = await t.gql(q, { token, variables: { filter: { status: "SUSPENDED" } } });
    expect(suspended.body.errors).toBeUndefined();
    expect(suspended.body.data.platform.tenants.edges.map((e: any) => e.node.slug)).toEqual(["extra-2"]);
    const search = await t.gql(q, { token, variables: { filter: { search: "EXTRA" } } });
    expect(search.body.data.platform.tenants.totalCount).toBe(3);
    const pro = await t.gql(q, { token, variables: { filter: { plan: "PRO" } } });
    const { rows } = await owner.query(`SELECT slug FROM tenants WHERE plan = 'PRO' ORDER BY slug`);
    expect(pro.body.data.platform.tenants.edges.map((e: any) => e.node.slug).sort()).toEqual(rows.map((r) => r.slug));
  });

  it("each analytics query is one aggregate statement plus the audit entry (no per-tenant queries)", async () => {
    const counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
    try {
      const report: Record<string, Record<string, number>> = {};
      for (const [name, query] of [
        ["tenantUsage", `{ platform { tenantUsage(first: 100) { totalCount edges { node { tenant { slug } members deploymentsByStatus { status count } apiRequests } } } } }`],
        ["totals", `{ platform { totals { tenants tenantsByPlan { plan count } apiRequests } } }`],
        ["tenants", `{ platform { tenants(first: 100) { totalCount edges { node { slug } } } } }`],
      ] as const) {
        const { result, statements } = await counter.record(() => t.gql(query, { token }));
        expect(result.body.errors).toBeUndefined();
        expect(ofPool(statements, "app")).toEqual([]);
        const platform = ofPool(statements, "platform");
        // Whatever the number of tenants: the directory cache may add a user lookup on a cold cache.
        // The main database's identity (pg_database, pg_control_system) is read once per
        // directory, by whichever request comes first: not a statement of this query.
        const data = platform.filter(
          (s) => /^(SELECT|WITH)/i.test(s.sql) && !/"users"|FROM "public"\."users"|FROM pg_database d|pg_control_system\(\)/i.test(s.sql),
        );
        const inserts = platform.filter((s) => /^INSERT/i.test(s.sql));
        expect(inserts, name).toHaveLength(1);
        // tenants: the page and its count; tenantUsage and totals: the lookup of the placed
        // tenants (read in their placements, docs/placement.md) and the aggregate.
        expect(data.length, `${name}: ${data.map((s) => s.sql.slice(0, 80)).join(" | ")}`).toBeLessThanOrEqual(2);
        report[name] = summarize(platform);
      }
      console.log("SQL statements per analytics query (platform pool):", JSON.stringify(report));
    } finally {
      counter.detach();
    }
  });
});
