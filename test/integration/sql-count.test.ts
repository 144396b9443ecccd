import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createSqlCounter, messagesOf, ofPool, summarize, type SqlCounter } from "../helpers/sql-counter.ts";

/**
 * Constant SQL per query: the dashboard query costs the same statements for
 * 1, 20 and 100 projects, inside ONE read transaction (one BEGIN, one
 * set_config for the RLS setting, one COMMIT). An N+1 anywhere in the
 * selection (createdBy, latestDeployment, counts) makes the count grow with
 * N and fails here. Counted at the pg pool: what actually reaches PostgreSQL.
 */

const DASHBOARD = `query Dashboard($n: Int!) {
  projects(first: $n) {
    edges { node {
      name
      deploymentCount
      latestDeployment { status }
      deployments(first: 5) { edges { node { status createdAt createdBy { email } } } }
    } }
  }
}`;

/**
 * Messages on the wire (round-trips): "BEGIN; SELECT set_config(...)" (RLS
 * setting + statement timeout, one simple-protocol message), the project
 * page with what its nodes select under it (each project's deployment count
 * and its first deployments with their creators, as JSON built by
 * PostgreSQL: src/modules/deployments/deployment.prefetch.ts; pages that
 * differ only in size, latestDeployment and deployments(first: 5), share
 * it), COMMIT.
 */
const DASHBOARD_STATEMENTS = ["begin + settings", "projects with deployment counts and deployments, with creators", "commit"];

/** The same dashboard SQL-planned (the default, docs/sql-plans.md): the whole answer's JSON text in one statement, with the opening and the COMMIT in one message. */
const PLANNED_STATEMENTS = ["begin + settings", "the answer built by PostgreSQL", "commit"];

/** What a statement of the dashboard is, from its text (the exact text is in test/__sql__/Dashboard.sql). */
function kindOf(sql: string): string {
  if (/^BEGIN( ISOLATION LEVEL REPEATABLE READ)?; SELECT set_config\('app\.tenant_id'/.test(sql)) return "begin + settings";
  if (sql === "COMMIT") return "commit";
  if (/^WITH sp\d+ AS MATERIALIZED \(SELECT u\.\* FROM users u WHERE u\.id IN \(SELECT .*app_visible_user.*SELECT '\{"data":' \|\| (?=.*FROM projects c WHERE c\.tenant_id = )(?=.*FROM deployments c WHERE c\.tenant_id = )/s.test(sql)) return "the answer built by PostgreSQL";
  if (/^WITH p AS \(SELECT .* FROM projects c WHERE .*\) , d AS \(SELECT x\.\* FROM p CROSS JOIN LATERAL \(SELECT .* FROM deployments c .*\), u AS MATERIALIZED \(SELECT .* FROM users u WHERE .*app_visible_user.* SELECT p\.\* , \(SELECT count\(\*\)::int FROM deployments n .* AS "deploymentCount", .* AS "deploymentRows" FROM p ORDER BY/.test(sql)) {
    return "projects with deployment counts and deployments, with creators";
  }
  return `unexpected: ${sql.slice(0, 80)}`;
}

/** The statement texts with the values that differ between tenants (inlined UUIDs) blanked. */
const texts = (statements: { sql: string }[]) =>
  statements.map((s) => s.sql.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, "<uuid>"));

const SIZES = [1, 20, 100] as const;

describe("SQL statements per request", () => {
  let t: TestApp;
  let counter: SqlCounter;
  const tokens = new Map<number, string>();

  beforeAll(async () => {
    t = await createTestApp();
    const db = t.clients.platform;
    for (const n of SIZES) {
      const slug = `sql-${n}-${randomBytes(3).toString("hex")}`;
      const tenant = await db.tenant.create({ data: { slug, name: `SQL ${n}`, plan: "ENTERPRISE" } });
      const email = `owner@${slug}.test`;
      const user = await db.user.create({ data: { email, authSubject: email, name: `Owner ${n}` } });
      await db.membership.create({ data: { tenantId: tenant.id, userId: user.id, role: "OWNER" } });
      const base = Date.now() - 10 * 24 * 3600_000;
      const projects = Array.from({ length: n }, (_, i) => ({
        tenantId: tenant.id,
        name: `Project ${i}`,
        slug: `project-${i}`,
        createdAt: new Date(base + i * 60_000),
      }));
      await db.project.createMany({ data: projects });
      const ids = await db.project.findMany({ where: { tenantId: tenant.id }, select: { id: true } });
      await db.deployment.createMany({
        data: ids.flatMap((p, i) =>
          Array.from({ length: 6 }, (_, d) => ({
            tenantId: tenant.id,
            projectId: p.id,
            status: (["READY", "BUILDING", "ERROR", "QUEUED", "CANCELED", "READY"] as const)[d]!,
            createdById: user.id,
            createdAt: new Date(base + i * 60_000 + (d + 1) * 1000),
          })),
        ),
      });
      tokens.set(n, await t.token(email, slug));
    }
    counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
  });
  afterAll(async () => {
    counter?.detach();
    await t?.close();
  });

  /** `planned: false`: with the projects' cursors, which the SQL plan leaves to execution (the prefetch then reads the subtree). */
  async function dashboard(n: number, planned = true) {
    const token = tokens.get(n)!;
    const query = planned ? DASHBOARD : DASHBOARD.replace("edges { node {", "edges { cursor node {");
    // Warm the directory cache (credentials, tenant, membership): a warm
    // request reaches PostgreSQL only for its data.
    await t.gql(query, { variables: { n }, token });
    const { result, statements } = await counter.record(() => t.gql(query, { variables: { n }, token }));
    expect(result.body.errors).toBeUndefined();
    return { body: result.body, statements };
  }

  it.each(SIZES.flatMap((n) => [[n, true] as const, [n, false] as const]))("the dashboard query for %i projects costs a fixed number of statements (SQL-planned: %s)", async (n, planned) => {
    const { body, statements } = await dashboard(n, planned);
    const edges = body.data.projects.edges;
    expect(edges).toHaveLength(n);
    for (const e of edges) {
      expect(e.node.deploymentCount).toBe(6);
      expect(e.node.latestDeployment.status).toBe("READY");
      expect(e.node.deployments.edges).toHaveLength(5);
      expect(e.node.deployments.edges[0].node.createdBy.email).toMatch(/^owner@sql-/);
    }
    const app = ofPool(statements, "app");
    const summary = summarize(app);
    if (process.env.SQL_COUNT_DUMP) console.log(n, app.map((s) => s.sql.slice(0, 160)));
    // The exact list, so a change shows up as a readable diff.
    expect(app.map((s) => kindOf(s.sql)), JSON.stringify(summary)).toEqual(planned ? PLANNED_STATEMENTS : DASHBOARD_STATEMENTS);
    expect(summary).toMatchObject({ begin: 1, setConfig: 1, commit: 1, rollback: 0 });
    // Executed: two messages, BEGIN + settings + facts; the page's statement
    // with the COMMIT (it is the operation's last: docs/request-path.md).
    // Planned: one, all three (docs/request-path.md, "One message for a planned read").
    expect(messagesOf(app)).toBe(planned ? 1 : 2);
    expect(app[1]!.message).toBe(app[2]!.message);
    // The warm request needs nothing from the platform path.
    expect(ofPool(statements, "platform")).toEqual([]);
  });

  it("answers the same rows as a direct query (whole rows from the shared LATERAL statement)", async () => {
    const token = tokens.get(20)!;
    const res = await t.gql(
      `{ projects(first: 3) { edges { node { id name
          latestDeployment { id status createdAt updatedAt project { name } createdBy { email } }
          deployments(first: 2) { pageInfo { hasNextPage } edges { cursor node { id status createdAt commitSha branch url project { name } } } }
          workflows(first: 1) { totalCount edges { node { id } } }
      } } } }`,
      { token },
    );
    expect(res.body.errors).toBeUndefined();
    const db = t.clients.platform;
    for (const { node } of res.body.data.projects.edges) {
      const projectId = Buffer.from(node.id, "base64").toString().split(":").pop()!;
      const expected = await db.deployment.findMany({
        where: { projectId },
        orderBy: [{ createdAt: "desc" }, { id: "desc" }],
        take: 2,
        include: { createdBy: true },
      });
      const got = node.deployments.edges.map((e: any) => e.node);
      expect(got.map((d: any) => d.createdAt)).toEqual(expected.map((d) => d.createdAt.toISOString()));
      expect(got.map((d: any) => d.status)).toEqual(expected.map((d) => d.status));
      expect(got.every((d: any) => d.project.name === node.name)).toBe(true);
      expect(node.deployments.pageInfo.hasNextPage).toBe(true);
      expect(node.deployments.edges[0].cursor).toEqual(expect.any(String));
      expect(node.latestDeployment).toMatchObject({
        id: got[0].id,
        status: expected[0]!.status,
        createdAt: expected[0]!.createdAt.toISOString(),
        updatedAt: expected[0]!.updatedAt.toISOString(),
        project: { name: node.name },
        createdBy: { email: expected[0]!.createdBy!.email },
      });
    }
  });

  it("createdBy of someone who is not a member of the tenant (any more) is null, through either path", async () => {
    const db = t.clients.platform;
    const project = await db.project.findFirstOrThrow({ where: { tenant: { slug: { startsWith: "sql-1-" } } } });
    const stranger = await db.user.create({ data: { email: `stranger-${randomBytes(3).toString("hex")}@else.test`, authSubject: `stranger-${randomBytes(4).toString("hex")}` } });
    const d = await db.deployment.create({
      data: { tenantId: project.tenantId, projectId: project.id, createdById: stranger.id, createdAt: new Date(), status: "READY" },
    });
    try {
      const token = tokens.get(1)!;
      // Nested (the LATERAL statement's join) and top level (the users loader).
      const res = await t.gql(
        `{ projects(first: 1) { edges { node { latestDeployment { id createdBy { email } } deployments(first: 2) { edges { node { createdBy { email } } } } } } }
           deployments(first: 1) { edges { node { id createdBy { email } } } } }`,
        { token },
      );
      expect(res.body.errors).toBeUndefined();
      const node = res.body.data.projects.edges[0].node;
      expect(node.latestDeployment).toEqual({ id: toGlobalId("Deployment", d.id), createdBy: null });
      expect(node.deployments.edges.map((e: any) => e.node.createdBy)).toEqual([null, { email: expect.stringMatching(/^owner@sql-1-/) }]);
      expect(res.body.data.deployments.edges[0].node).toEqual({ id: toGlobalId("Deployment", d.id), createdBy: null });
    } finally {
      await db.deployment.delete({ where: { tenantId_id: { tenantId: d.tenantId, id: d.id } } });
      await db.user.delete({ where: { id: stranger.id } });
    }
  });

  it("sends the very same statements for 1, 20 and 100 projects", async () => {
    const lists: string[][] = [];
    for (const n of SIZES) lists.push(texts(ofPool((await dashboard(n)).statements, "app")));
    for (const n of SIZES) lists.push(texts(ofPool((await dashboard(n, false)).statements, "app")));
    expect(lists[4]).toEqual(lists[3]);
    expect(lists[5]).toEqual(lists[3]);
    expect(lists[0]).toHaveLength(PLANNED_STATEMENTS.length);
    expect(lists[1]).toEqual(lists[0]);
    expect(lists[2]).toEqual(lists[0]);
  });

  it("runs every statement of a query request in one transaction on one connection", async () => {
    const { statements } = await dashboard(20);
    const app = ofPool(statements, "app").map((s) => s.sql.toUpperCase());
    expect(app[0]).toMatch(/^BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT SET_CONFIG\('APP.TENANT_ID'/);
    expect(app[app.length - 1]).toBe("COMMIT");
    expect(app.filter((s) => s.startsWith("BEGIN"))).toHaveLength(1);
    expect(app.filter((s) => s.includes("SET_CONFIG("))).toHaveLength(1);
  });

  it("counts statements for real (the counter sees a per-row query)", async () => {
    // One request with two roots: each root adds its own statements, so the
    // counter is not a constant that would pass whatever the app does.
    const token = tokens.get(1)!;
    const { statements } = await counter.record(() =>
      // (Cursors: executed field by field, not one SQL-planned statement.)
      t.gql(`{ a: projects(first: 1) { edges { cursor node { name } } } b: projects(first: 1, orderBy: { field: NAME, direction: ASC }) { edges { cursor node { name } } } }`, { token }),
    );
    expect(ofPool(statements, "app")).toHaveLength(4); // BEGIN + set_config, 2 × SELECT, COMMIT
    // Neither page is the operation's last statement (two roots): COMMIT on its own.
    expect(messagesOf(ofPool(statements, "app"))).toBe(4);
  });
});
