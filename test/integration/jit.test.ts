import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

/**
 * A document's first execution runs on Yoga's interpreter, the next ones on
 * graphql-jit's compiled function (src/http/use-jit.ts). The answers must not
 * differ: data, nulls, errors with their codes and paths, abstract types,
 * variables. The plugin is given a cache that records each compiled document
 * and counts the calls of its compiled function, so each case also proves
 * which execution ran compiled.
 */
const jit = vi.hoisted(() => ({ compiled: new Map<string, number>() }));

vi.mock("@envelop/graphql-jit", async (importOriginal) => {
  const original = await importOriginal<typeof import("@envelop/graphql-jit")>();
  type Entry = { query: (...args: unknown[]) => unknown };
  const entries = new Map<string, Entry>();
  const cache = {
    get: (source: string) => entries.get(source),
    set(source: string, entry: Entry) {
      const query = entry.query;
      jit.compiled.set(source, 0);
      // The same entry object is what the plugin runs from then on.
      entry.query = (...args: unknown[]) => {
        jit.compiled.set(source, (jit.compiled.get(source) ?? 0) + 1);
        return query(...args);
      };
      entries.set(source, entry);
    },
  };
  return {
    ...original,
    useGraphQlJit: (compilerOptions?: object, pluginOptions: object = {}) =>
      original.useGraphQlJit(compilerOptions, { ...pluginOptions, cache: cache as never }),
  };
});

/** Compiled executions of `query` so far (undefined: never compiled). */
const compiledRuns = (query: string) => [...jit.compiled].find(([source]) => source.replace(/\s+/g, "") === query.replace(/\s+/g, ""))?.[1];
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
      `{ usage { plan quotas { resource limit } } auditLog(first: 2) { edges { node { action actorType tenant { slug } } } } }`,
      () => ({}),
      () => admin,
    ],
  ];

  it.each(cases)("%s", async (_name, query, variables, token) => {
    const first = await t.gql(query, { token: token(), variables: variables() });
    // A document that fails validation never executes: it would prove nothing.
    expect(first.body.errors?.map((e: { extensions?: { code?: string } }) => e.extensions?.code) ?? []).not.toContain("GRAPHQL_VALIDATION_FAILED");
    expect(compiledRuns(query), "the first execution is interpreted").toBeUndefined();
    const second = await t.gql(query, { token: token(), variables: variables() });
    expect(compiledRuns(query), "the second execution runs compiled").toBe(1);
    const third = await t.gql(query, { token: token(), variables: variables() });
    expect(compiledRuns(query)).toBe(2);
    expect(first.status).toBe(second.status);
    expect(second.body).toEqual(first.body);
    expect(third.body).toEqual(first.body);
    // Field order follows the selection (GraphQL spec), compiled or not. (The
    // order of the top-level "data" and "errors" keys is not meaningful.)
    expect(JSON.stringify(second.body.data)).toBe(JSON.stringify(first.body.data));
    expect(JSON.stringify(second.body.errors)).toBe(JSON.stringify(first.body.errors));
  });
  it("each operation of a multi-operation document answers itself (such documents stay on the interpreter)", async () => {
    const doc = `query A { tenant { slug } } query B { projects(first: 1) { totalCount } }`;
    const send = async (operationName: string) => {
      const res = await t.app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${viewer}` },
        body: JSON.stringify({ query: doc, operationName }),
      });
      return (await res.json()) as { data?: Record<string, unknown> };
    };
    for (let i = 0; i < 3; i++) expect(Object.keys((await send("A")).data ?? {})).toEqual(["tenant"]);
    expect(Object.keys((await send("B")).data ?? {})).toEqual(["projects"]);
  });

  it("a non-null variable with a default may be omitted, compiled or not", async () => {
    const q = `query($n: Int! = 2) { projects(first: $n) { edges { node { id } } } }`;
    for (let i = 0; i < 3; i++) {
      const res = await t.gql(q, { token: viewer });
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data.projects.edges).toHaveLength(2);
    }
  });
});
