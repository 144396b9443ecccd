import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

/**
 * A document's first execution runs on Yoga's interpreter, the next ones on
 * graphql-jit's compiled function (src/app.ts). The answers must not differ:
 * data, nulls, errors with their codes and paths, abstract types, variables.
 */
describe("compiled execution answers as the interpreter does", () => {
  let t: TestApp;
  let viewer: string;
  let admin: string;
  let projectId: string;
  let deploymentId: string;

  beforeAll(async () => {
    t = await createTestApp();
    viewer = await t.memberToken("acme", "VIEWER");
    admin = await t.memberToken("acme", "ADMIN");
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    const d = await t.clients.platform.deployment.findFirstOrThrow({ where: { tenantId: acme.id } });
    projectId = toGlobalId("Project", d.projectId);
    deploymentId = toGlobalId("Deployment", d.id);
  });
  afterAll(async () => {
    await t?.close();
  });

  const cases: [string, string, () => Record<string, unknown>, () => string][] = [
    [
      "the dashboard, with cursors and page info",
      `query D($n: Int!) { projects(first: $n) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id name deploymentCount
         latestDeployment { id status createdAt createdBy { email } }
         deployments(first: 3) { totalCount edges { node { id status createdAt updatedAt url commitSha branch createdBy { email } project { id } } } } } } } }`,
      () => ({ n: 3 }),
      () => viewer,
    ],
    [
      "node/nodes over several types, a foreign and a malformed id",
      `query N($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on Project { name } ... on Deployment { status } } }`,
      () => ({ ids: [projectId, deploymentId, toGlobalId("Project", "00000000-0000-4000-8000-000000000000")] }),
      () => viewer,
    ],
    [
      "a field the role may not read: FORBIDDEN with its path, the rest answered",
      `{ viewer { role } apiKeys(first: 1) { totalCount } projects(first: 1) { edges { node { name } } } }`,
      () => ({}),
      () => viewer,
    ],
    [
      "a bad argument: BAD_USER_INPUT naming the field",
      `query P($after: String) { projects(first: 2, after: $after) { edges { node { id } } } }`,
      () => ({ after: "not-a-cursor" }),
      () => viewer,
    ],
    [
      "the ADMIN's audit log and usage",
      `{ usage { resource limit used remaining } auditLog(first: 2) { edges { node { action actorType tenant { slug } } } } }`,
      () => ({}),
      () => admin,
    ],
  ];

  it.each(cases)("%s", async (_name, query, variables, token) => {
    const first = await t.gql(query, { token: token(), variables: variables() });
    const second = await t.gql(query, { token: token(), variables: variables() });
    const third = await t.gql(query, { token: token(), variables: variables() });
    expect(first.status).toBe(second.status);
    expect(second.body).toEqual(first.body);
    expect(third.body).toEqual(first.body);
    // Field order follows the selection (GraphQL spec), compiled or not. (The
    // order of the top-level "data" and "errors" keys is not meaningful.)
    expect(JSON.stringify(second.body.data)).toBe(JSON.stringify(first.body.data));
    expect(JSON.stringify(second.body.errors)).toBe(JSON.stringify(first.body.errors));
  });
});
