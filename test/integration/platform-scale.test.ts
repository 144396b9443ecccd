import { CursorCodec } from "../../src/infra/cursor.ts";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tenantUsage } from "../../src/modules/platform/tenant-usage.service.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { createSqlCounter, ofPool } from "../helpers/sql-counter.ts";

/**
 * tenantUsage at scale: 100 tenants x 20 projects x 50 deployments (100,000
 * deployments), seeded with multi-row INSERT ... SELECT generate_series by
 * the table owner. Asserts the answer matches the raw aggregate and that the
 * statement count does not grow with the tenants; prints the timings
 * (measured, not asserted: timing belongs to `npm run bench`).
 */

const USAGE = `{ platform { tenantUsage(first: 100, orderBy: { field: DEPLOYMENTS, direction: DESC }) {
  totalCount edges { node { tenant { id } members projects deployments workflows apiRequests deploymentsByStatus { status count } } } } } }`;

const RAW = `
  SELECT t.id,
    (SELECT count(*) FROM memberships m WHERE m.tenant_id = t.id)::int AS members,
    coalesce(p.n, 0)::int AS projects, coalesce(d.n, 0)::int AS deployments
  FROM tenants t
  LEFT JOIN (SELECT tenant_id, count(*) n FROM projects GROUP BY tenant_id) p ON p.tenant_id = t.id
  LEFT JOIN (SELECT tenant_id, count(*) n FROM deployments GROUP BY tenant_id) d ON d.tenant_id = t.id
  ORDER BY deployments DESC, t.id DESC LIMIT 100`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe("tenantUsage over 100 tenants x 20 projects x 50 deployments", () => {
  let t: TestApp;
  let owner: pg.Client;

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore(), seed: false });
    await t.clients.platform.user.create({ data: { email: "ops@platform.test", authSubject: "ops@platform.test", isPlatformAdmin: true } });
    owner = new pg.Client({ connectionString: t.db.url });
    await owner.connect();
    const started = Date.now();
    await owner.query(`INSERT INTO tenants (slug, name, plan) SELECT 'scale-' || i, 'Scale ' || i, (ARRAY['FREE','PRO','ENTERPRISE'])[1 + i % 3]::"Plan" FROM generate_series(1, 100) i`);
    await owner.query(`INSERT INTO users (email, auth_subject) SELECT 'u' || i || '@scale.test', 'u' || i || '@scale.test' FROM generate_series(1, 300) i`);
    await owner.query(`
      INSERT INTO memberships (tenant_id, user_id, role)
      SELECT t.id, u.id, 'DEVELOPER' FROM tenants t JOIN users u ON u.email LIKE 'u%@scale.test'
      WHERE (hashtext(t.id::text || u.id::text) & 7) = 0`);
    await owner.query(`INSERT INTO projects (tenant_id, name, slug) SELECT t.id, 'p' || i, 'p' || i FROM tenants t, generate_series(1, 20) i`);
    await owner.query(`
      INSERT INTO deployments (tenant_id, project_id, status, created_at)
      SELECT p.tenant_id, p.id, (ARRAY['QUEUED','BUILDING','READY','ERROR','CANCELED'])[1 + i % 5]::"DeploymentStatus", now() - i * interval '1 hour'
      FROM projects p, generate_series(1, 50) i`);
    await owner.query(`INSERT INTO workflows (tenant_id, name) SELECT t.id, 'w' || i FROM tenants t, generate_series(1, 5) i`);
    await owner.query(`
      INSERT INTO usage_counters (tenant_id, resource, window_start, count)
      SELECT t.id, 'API_REQUESTS_PER_MINUTE', date_trunc('hour', now()) - h * interval '1 hour', 100 + h
      FROM tenants t, generate_series(0, 23) h`);
    // Request rows written directly, not by the request counter's flush: the tenants' request totals recounted.
    await owner.query(`SELECT count(app_tenant_stats_recount(id)) FROM tenants`);
    await owner.query(`ANALYZE`);
    console.log(`seeded 100 tenants / 2,000 projects / 100,000 deployments in ${Date.now() - started} ms`);
  }, 300_000);
  afterAll(async () => {
    await owner?.end();
    await t?.close();
    await t?.store.close();
  });

  it("matches the raw aggregate, in a constant number of statements; timings printed", async () => {
    const token = await t.adminToken();
    const counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
    let statements = 0;
    const gqlMs: number[] = [];
    let data: any;
    try {
      for (let i = 0; i < 7; i++) {
        const t0 = performance.now();
        const { result, statements: s } = await counter.record(() => t.gql(USAGE, { token }));
        gqlMs.push(performance.now() - t0);
        expect(result.body.errors).toBeUndefined();
        data = result.body.data.platform.tenantUsage;
        statements = ofPool(s, "platform").filter((x) => !/FROM "public"\."users"/.test(x.sql)).length;
        expect(ofPool(s, "app")).toEqual([]);
      }
    } finally {
      counter.detach();
    }
    const rawMs: number[] = [];
    let raw: any[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      raw = (await owner.query(RAW)).rows;
      rawMs.push(performance.now() - t0);
    }
    // The service's aggregate statement alone (platform client, no HTTP/GraphQL/audit).
    const serviceMs: number[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      await tenantUsage(t.clients.platform, new CursorCodec("scale-test"), { first: 100, orderBy: { field: "DEPLOYMENTS", direction: "DESC" } });
      serviceMs.push(performance.now() - t0);
    }
    expect(data.totalCount).toBe(100);
    expect(data.edges).toHaveLength(100);
    const got = new Map(data.edges.map((e: any) => [Buffer.from(e.node.tenant.id, "base64").toString().split(":")[1], e.node]));
    for (const r of raw) {
      const n: any = got.get(r.id);
      expect({ members: n.members, projects: n.projects, deployments: n.deployments }).toEqual({ members: r.members, projects: r.projects, deployments: r.deployments });
      expect(n.apiRequests).toBe(24 * 100 + 276);
      expect(n.deploymentsByStatus.reduce((s: number, x: any) => s + x.count, 0)).toBe(n.deployments);
    }
    // BEGIN, the placed tenants' lookup (docs/placement.md), the aggregate, the audit INSERT, COMMIT: whatever the number of tenants.
    expect(statements).toBeLessThanOrEqual(5);
    console.log(
      "tenantUsage(first: 100) over 100x20x50:",
      JSON.stringify({
        graphqlMedianMs: Math.round(median(gqlMs) * 10) / 10,
        graphqlRunsMs: gqlMs.map((x) => Math.round(x)),
        aggregateStatementMedianMs: Math.round(median(serviceMs) * 10) / 10,
        rawSqlMedianMs: Math.round(median(rawMs) * 10) / 10,
        rawRunsMs: rawMs.map((x) => Math.round(x)),
        platformStatements: statements,
      }),
    );
  }, 120_000);
});
