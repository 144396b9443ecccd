import { parse } from "graphql";
import { describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { MAX_SUBQUERIES, planQuery } from "../../src/graphql/sql-plan-compile.ts";
import { sqlPlans, type PlanContext, type SqlPlans } from "../../src/graphql/sql-plan.ts";
import { CursorCodec } from "../../src/infra/cursor.ts";
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
