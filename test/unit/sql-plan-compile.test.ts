import { parse } from "graphql";
import { describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { PLAN_CACHE_MAX, planCacheSize } from "../../src/graphql/sql-plan-cache.ts";
import { MAX_SUBQUERIES, planQuery } from "../../src/graphql/sql-plan-compile.ts";
import { sqlPlans, type PlanContext, type SqlPlans } from "../../src/graphql/sql-plan.ts";
import { CursorCodec } from "../../src/infra/cursor.ts";
import { Metrics } from "../../src/infra/metrics.ts";
import { deploymentSqlPlans } from "../../src/modules/deployments/deployment.sql-plan.ts";
import { projectSqlPlans } from "../../src/modules/projects/project.sql-plan.ts";
import { userSqlPlans } from "../../src/modules/users/user.sql-plan.ts";
import { schema } from "../../src/schema.ts";

/**
 * What the SQL planner admits (src/graphql/sql-plan-compile.ts), on the real
 * schema and its policies: a field is planned only when its policy is an
 * @auth this caller passes; anything else (a higher role, @feature, a
 * platform admin without a tenant role, directives, mutations,
 * introspection, bad variables) is left to execution, which gives its error.
 */

const TENANT = "4e6a00a2-a105-40db-958f-35ee640b74e0";

/** A declared page that reads nothing (only whether the planner admits the field matters here). */
const anyPage = { kind: "connection" as const, page: () => ({ rows: Prisma.sql`SELECT 1 AS id`, order: () => Prisma.sql`1`, size: 1, total: Prisma.sql`SELECT 0` }) };
const PLANS: SqlPlans = sqlPlans(projectSqlPlans, deploymentSqlPlans, userSqlPlans, {
  // @auth(requires: ADMIN), and @auth(ADMIN) @feature(advanced_analytics) (a list, but admission comes first).
  Query: { apiKeys: anyPage, deploymentStats: anyPage },
});

function ctxOf(role: string | null, features: string[] = []): PlanContext {
  return {
    actor: { type: "USER", id: "u", label: "u" },
    user: { id: "3c901fde-d579-44f4-82d0-a23f6fbb847c", email: "u@x.test", name: null },
    tenant: { id: TENANT, plan: "PRO", features, limits: {} },
    role,
    cursors: new CursorCodec("0123456789abcdef0123456789abcdef"),
  } as unknown as PlanContext;
}

const plan = (ctx: PlanContext, query: string, variables: Record<string, unknown> = {}, operationName?: string) =>
  planQuery(schema, PLANS, ctx, parse(query), operationName, variables);

describe("the SQL planner admits only what this caller passes for sure", () => {
  it("plans the dashboard for every role, with the tenant filter of the request's tenant", () => {
    for (const role of ["VIEWER", "DEVELOPER", "ADMIN", "OWNER"]) {
      const planned = plan(ctxOf(role), `{ projects(first: 2) { edges { node { id deployments(first: 1) { totalCount } } } } }`);
      expect(planned?.sql.text).toMatch(/FROM projects c\s+WHERE c\.tenant_id = \$\d+::uuid/);
      expect(planned?.sql.values.filter((v) => v === TENANT).length).toBeGreaterThanOrEqual(3);
      expect(planned?.roots.map((r) => r.key)).toEqual(["projects"]);
    }
  });

  it("leaves a field above the caller's role to the enforcer", () => {
    expect(plan(ctxOf("VIEWER"), `{ apiKeys { totalCount } }`)).toBeNull();
    expect(plan(ctxOf("DEVELOPER"), `{ apiKeys { totalCount } }`)).toBeNull();
    expect(plan(ctxOf("ADMIN"), `{ apiKeys { totalCount } }`)).not.toBeNull();
    // One denied field anywhere: the whole operation is executed.
    expect(plan(ctxOf("VIEWER"), `{ projects { totalCount } apiKeys { totalCount } }`)).toBeNull();
  });

  it("never plans @feature (nor a caller without a tenant role)", () => {
    expect(plan(ctxOf("OWNER", ["advanced_analytics"]), `{ deploymentStats(from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z") { __typename } }`)).toBeNull();
    expect(plan(ctxOf(null), `{ projects { totalCount } }`)).toBeNull();
  });

  it("leaves directives, mutations, introspection, undeclared fields and refused arguments to execution", () => {
    const viewer = ctxOf("VIEWER");
    expect(plan(viewer, `{ projects { totalCount } }`)).not.toBeNull();
    for (const q of [
      `{ projects @skip(if: false) { totalCount } }`,
      `query Q @deprecated { projects { totalCount } }`,
      `mutation { deleteProject(input: { id: "x" }) { deletedProjectId } }`,
      `{ __schema { queryType { name } } projects { totalCount } }`,
      `{ __typename }`,
      `{ projects { edges { node { workflows { totalCount } } } } }`,
      `{ projects(first: 101) { totalCount } }`,
      `{ projects(after: "abc") { totalCount } }`,
    ]) {
      expect(plan(viewer, q), q).toBeNull();
    }
    expect(plan(viewer, `query($n: Int!) { projects(first: $n) { totalCount } }`, {})).toBeNull();
    expect(plan(viewer, `query($n: Int!) { projects(first: $n) { totalCount } }`, { n: "two" })).toBeNull();
    expect(plan(viewer, `query($n: Int!) { projects(first: $n) { totalCount } }`, { n: 2 })).not.toBeNull();
  });

  it("plans the operation named, in a document of several", () => {
    const doc = `query A { tenant { slug } } query B { projects { totalCount } }`;
    expect(plan(ctxOf("VIEWER"), doc, {}, "A")).toBeNull();
    expect(plan(ctxOf("VIEWER"), doc, {}, "B")).not.toBeNull();
  });

  it("leaves a document of more subqueries than MAX_SUBQUERIES to execution (aliases of one connection are batched there)", () => {
    const aliased = (n: number) =>
      `query($n: Int) { projects(first: $n) { edges { node { ${Array.from({ length: n }, (_, i) => `d${i}: deployments(first: $n) { edges { node { createdBy { id } } } }`).join(" ")} } } } }`;
    // projects + (deployments + createdBy) per alias
    const fits = Math.floor((MAX_SUBQUERIES - 1) / 2);
    expect(plan(ctxOf("VIEWER"), aliased(fits), { n: 100 })).not.toBeNull();
    expect(plan(ctxOf("VIEWER"), aliased(fits + 1), { n: 100 })).toBeNull();
    expect(plan(ctxOf("VIEWER"), aliased(29), { n: 100 })).toBeNull();
  });
});

describe("the compile cache: a template bound per request, never a plan for another caller", () => {
  /** The planner's outcomes counted since `m` was made (tenantgraph_sql_plan_total, "outcome/reason"). */
  async function outcomes(m: Metrics): Promise<Record<string, number>> {
    const metric = await m.registry.getSingleMetric("tenantgraph_sql_plan_total")!.get();
    return Object.fromEntries(metric.values.filter((v) => v.value > 0).map((v) => [`${v.labels.outcome}/${v.labels.reason}`, v.value]));
  }
  const OTHER = "b3d4c8f0-52d6-4bb5-8a41-7f6b3a0e9c21";
  const inTenant = (ctx: PlanContext, id: string): PlanContext => ({ ...ctx, tenant: { ...ctx.tenant, id } }) as PlanContext;

  it("a plan cached for a role an @auth admits is not used for a role it refuses, in either order", async () => {
    const m = new Metrics({ defaultMetrics: false });
    const admins = parse(`{ apiKeys { totalCount } }`);
    expect(planQuery(schema, PLANS, ctxOf("ADMIN"), admins, undefined, {})).not.toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("ADMIN"), admins, undefined, {})).not.toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("VIEWER"), admins, undefined, {})).toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("DEVELOPER"), admins, undefined, {})).toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("OWNER"), admins, undefined, {})).not.toBeNull();
    // Refused first (that fallback remembered for VIEWER), admitted after.
    const viewers = parse(`{ apiKeys { totalCount } }`);
    expect(planQuery(schema, PLANS, ctxOf("VIEWER"), viewers, undefined, {})).toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("VIEWER"), viewers, undefined, {})).toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("ADMIN"), viewers, undefined, {})).not.toBeNull();
    expect(await outcomes(m)).toEqual({ "planned/compiled": 3, "planned/cached": 1, "fallback/denied": 4 });
  });

  it("binds each tenant's own id into the one template (never the id it was compiled for)", async () => {
    const m = new Metrics({ defaultMetrics: false });
    const doc = parse(`{ projects(first: 2) { edges { node { id deploymentCount deployments(first: 1) { edges { node { createdBy { email } } } } } } } }`);
    const a = planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, {})!;
    const b = planQuery(schema, PLANS, inTenant(ctxOf("VIEWER"), OTHER), doc, undefined, {})!;
    expect(await outcomes(m)).toEqual({ "planned/compiled": 1, "planned/cached": 1 });
    expect(b.sql.text).toBe(a.sql.text);
    expect(a.sql.text).not.toContain(TENANT);
    expect(a.sql.values).toContain(TENANT);
    expect(a.sql.values).not.toContain(OTHER);
    expect(b.sql.values).toContain(OTHER);
    expect(b.sql.values).not.toContain(TENANT);
    // Every tenant filter of b is b's: the values that were TENANT in a are OTHER in b, and nothing else moved.
    expect(b.sql.values).toEqual(a.sql.values.map((v) => (v === TENANT ? OTHER : v)));
    // The caller is bound too (app_visible_user's third argument).
    const other = planQuery(schema, PLANS, { ...ctxOf("VIEWER"), user: { id: "5a1f0b7e-88c2-4f7d-9d43-0c8e1b2a6f90", email: "v@x.test", name: null } } as PlanContext, doc, undefined, {})!;
    expect(other.sql.values).toContain("5a1f0b7e-88c2-4f7d-9d43-0c8e1b2a6f90");
    expect(other.sql.values).not.toContain(ctxOf("VIEWER").user!.id);
  });

  it("rebinds variables: first: 5 then first: 20 are one template with their own page sizes", async () => {
    const m = new Metrics({ defaultMetrics: false });
    const doc = parse(`query($n: Int!) { projects(first: $n) { totalCount pageInfo { hasNextPage } edges { node { id } } } }`);
    const five = planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, { n: 5 })!;
    const twenty = planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, { n: 20 })!;
    expect(await outcomes(m)).toEqual({ "planned/compiled": 1, "planned/cached": 1 });
    expect(twenty.sql.text).toBe(five.sql.text);
    // The page's LIMIT (size + 1) and size, bound.
    expect(five.sql.values).toEqual(expect.arrayContaining([6, 5]));
    expect(five.sql.values).not.toContain(21);
    expect(twenty.sql.values).toEqual(expect.arrayContaining([21, 20]));
    expect(twenty.sql.values).not.toContain(6);
    // A value execution would refuse is still refused with the template cached (execution answers its error).
    expect(planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, { n: 1000 })).toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, { n: "x" })).toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, { n: 3 })?.sql.values).toContain(4);
    expect(await outcomes(m)).toEqual({ "planned/compiled": 1, "planned/cached": 2, "fallback/invalid": 1, "fallback/variables": 1 });
  });

  it("a variable whose value changes the text is compiled for it (a search), the template kept for the others", async () => {
    const m = new Metrics({ defaultMetrics: false });
    const doc = parse(`query($s: String, $after: DateTime) { projects(filter: { search: $s }) { edges { node { deployments(filter: { createdAfter: $after }) { totalCount } } } } }`);
    expect(planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, { s: "  " })).not.toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, { s: "acme" })).toBeNull();
    expect(planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, { s: "" })).not.toBeNull();
    // A filter set adds a condition: another shape of the variables, another template.
    const since = planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, { s: "", after: "2026-01-01T00:00:00Z" })!;
    expect(since.sql.text).toMatch(/created_at > \$\d+::timestamptz/);
    expect(since.sql.values).toContainEqual(new Date("2026-01-01T00:00:00Z"));
    expect(await outcomes(m)).toEqual({ "planned/compiled": 2, "planned/cached": 1, "fallback/arguments": 1 });
  });

  it(`holds at most PLAN_CACHE_MAX (${PLAN_CACHE_MAX}) plans, the least recently used dropped first`, async () => {
    const docs = Array.from({ length: PLAN_CACHE_MAX + 20 }, (_, i) => parse(`{ projects(first: ${i % 50}) { totalCount } }`));
    const m = new Metrics({ defaultMetrics: false });
    for (const doc of docs) planQuery(schema, PLANS, ctxOf("VIEWER"), doc, undefined, {});
    expect(planCacheSize()).toBe(PLAN_CACHE_MAX);
    planQuery(schema, PLANS, ctxOf("VIEWER"), docs.at(-1)!, undefined, {});
    planQuery(schema, PLANS, ctxOf("VIEWER"), docs[0]!, undefined, {});
    expect(planCacheSize()).toBe(PLAN_CACHE_MAX);
    expect(await outcomes(m)).toEqual({ "planned/compiled": PLAN_CACHE_MAX + 21, "planned/cached": 1 });
  });

  it("counts every fallback by its reason", async () => {
    const m = new Metrics({ defaultMetrics: false });
    const viewer = ctxOf("VIEWER");
    const cases: [string, string][] = [
      ["directive", `{ projects @skip(if: false) { totalCount } }`],
      ["operation", `mutation { deleteProject(input: { id: "x" }) { deletedProjectId } }`],
      ["undeclared", `{ tenant { slug } }`],
      ["policy", `{ deploymentStats(from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z") { __typename } }`],
      ["denied", `{ apiKeys { totalCount } }`],
      ["arguments", `{ projects(after: "abc") { totalCount } }`],
      ["invalid", `{ projects(first: 101) { totalCount } }`],
      ["cursor", `{ projects { edges { cursor } } }`],
      ["root", `{ __typename }`],
    ];
    for (const [, q] of cases) expect(plan(viewer, q), q).toBeNull();
    expect(plan(viewer, `query($n: Int!) { projects(first: $n) { totalCount } }`, {})).toBeNull();
    expect(await outcomes(m)).toEqual({ ...Object.fromEntries(cases.map(([reason]) => [`fallback/${reason}`, 1])), "fallback/variables": 1 });
  });
});
