import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createSqlCounter, ofPool, type SqlCounter } from "../helpers/sql-counter.ts";

/**
 * The project page reads the subtree its nodes select in its own statement
 * (src/modules/deployments/deployment.prefetch.ts); the resolvers then read
 * it from the rows instead of three more statements through loaders. The
 * answers must be the loaders' answers: every case is also sent with an
 * `@include(if: true)` on `node`, which the prefetch does not read through
 * (the loaders answer), and the two must be equal, and the prefetch must
 * have cut the statements.
 */
describe("the dashboard's subtree read with its project page", () => {
  let t: TestApp;
  let counter: SqlCounter;
  let viewer: string;

  beforeAll(async () => {
    t = await createTestApp();
    counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
    viewer = await t.memberToken("acme", "VIEWER");
  });
  afterAll(async () => {
    await t?.close();
  });

  const node = (fields: string) => `edges { cursor node { id name slug description createdAt updatedAt ${fields} } }`;
  const deployment = `id status url commitSha branch createdAt updatedAt createdBy { id email name } project { id }`;
  const cases: [string, string, Record<string, unknown>][] = [
    [
      "the bench's dashboard",
      `{ projects(first: 20) { ${node(`deploymentCount latestDeployment { id status createdAt } deployments(first: 5) { edges { node { id status branch commitSha createdAt createdBy { email } } } }`)} } }`,
      {},
    ],
    [
      "cursors, page info and totals of both levels, through a fragment",
      `query D($n: Int!, $m: Int!) { projects(first: $n) { totalCount pageInfo { hasNextPage endCursor } ${node(`...P`)} } }
       fragment P on Project { deploymentCount latestDeployment { ${deployment} } deployments(first: $m) { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { ${deployment} } } } }`,
      { n: 3, m: 2 },
    ],
    [
      "a filtered, re-sorted page of deployments",
      `{ projects(first: 4, orderBy: { field: NAME, direction: ASC }) { ${node(`deployments(first: 3, filter: { status: [READY, ERROR] }, orderBy: { field: UPDATED_AT, direction: ASC }) { edges { node { ${deployment} } } }`)} } }`,
      {},
    ],
    [
      "two kinds of deployment pages (read by the loaders)",
      `{ projects(first: 4) { ${node(`latestDeployment { id } deployments(first: 2, orderBy: { field: UPDATED_AT, direction: ASC }) { edges { node { id } } }`)} } }`,
      {},
    ],
  ];

  const withInclude = (query: string) => query.replace(/edges \{ cursor node \{/g, "edges { cursor node @include(if: true) {");

  it.each(cases)("%s", async (name, query, variables) => {
    // The caller's directory entries cached first: only the request's own statements are counted.
    await t.gql(query, { token: viewer, variables });
    const pre = await counter.record(() => t.gql(query, { token: viewer, variables }));
    const loaded = await counter.record(() => t.gql(withInclude(query), { token: viewer, variables }));
    expect(pre.result.body.errors).toBeUndefined();
    expect(loaded.result.body.errors).toBeUndefined();
    expect(pre.result.body.data.projects.edges.length).toBeGreaterThan(0);
    expect(JSON.stringify(pre.result.body.data)).toBe(JSON.stringify(loaded.result.body.data));
    const app = (s: typeof pre.statements) => ofPool(s, "app").length;
    if (name.includes("two kinds")) expect(app(pre.statements)).toBe(app(loaded.statements));
    else expect(app(pre.statements)).toBeLessThan(app(loaded.statements));
  });

  it("a creator the tenant may no longer see is null, as through the users loader, with no second look", async () => {
    // Its own creator, project and deployment: the seeded creators stay visible to the other cases.
    const p = t.clients.platform;
    const acme = await p.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const email = `gone-${randomUUID()}@prefetch.test`;
    const creator = await p.user.create({ data: { email, authSubject: email, memberships: { create: { tenantId: acme.id, role: "DEVELOPER" } } } });
    const project = await p.project.create({ data: { tenantId: acme.id, name: "Creator probe", slug: `creator-${randomUUID()}` } });
    const mine = await p.deployment.create({ data: { tenantId: acme.id, projectId: project.id, status: "READY", createdById: creator.id } });
    const query = `{ projects(first: 50) { ${node(`deployments(first: 1) { edges { node { id createdBy { email } } } }`)} } }`;
    const createdBy = async (q: string) => {
      const { result: res, statements } = await counter.record(() => t.gql(q, { token: viewer }));
      expect(res.body.errors).toBeUndefined();
      const nodes = res.body.data.projects.edges.flatMap((e: any) => e.node.deployments.edges.map((d: any) => d.node));
      const found = nodes.find((d: { id: string }) => d.id === toGlobalId("Deployment", mine.id));
      expect(found).toBeDefined();
      return { createdBy: found.createdBy, usersRead: statements.filter((s) => /FROM users u WHERE u\.id = ANY/.test(s.sql)).length };
    };
    expect(await createdBy(query)).toEqual({ createdBy: { email }, usersRead: 0 });
    await p.membership.deleteMany({ where: { tenantId: acme.id, userId: creator.id } });
    // The prefetch read the creator as not visible: the answer, not a reason to ask the users loader.
    expect(await createdBy(query)).toEqual({ createdBy: null, usersRead: 0 });
    expect((await createdBy(withInclude(query))).createdBy).toBeNull();
  });
});
