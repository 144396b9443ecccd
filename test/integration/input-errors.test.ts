import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

/**
 * Input graphql refuses before any resolver (src/http/use-input-errors.ts):
 * variables that do not coerce, a literal a scalar refuses, a body without a
 * query. Review-1330 F5/F6: year 0000 reached PostgreSQL (500), coercion
 * errors had no code, echoed the values sent and were 200 or 400. Each is
 * BAD_USER_INPUT (BAD_REQUEST for the missing query), 400, the offending
 * field named, the value never in the answer; asserted on the raw text.
 */
describe("input errors", () => {
  let t: TestApp;
  let token: string;
  let projectId: string;
  beforeAll(async () => {
    t = await createTestApp();
    token = await t.memberToken("acme", "DEVELOPER");
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenant: { slug: "acme" } } });
    projectId = toGlobalId("Project", project.id);
  });
  afterAll(async () => {
    await t?.close();
  });

  async function post(body: unknown) {
    const res = await t.app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, text, json: JSON.parse(text) as { data?: unknown; errors?: any[] } };
  }

  const create = `mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }`;

  // Twice: the second run of a document is graphql-jit's (src/http/use-jit.ts), whose coercion is its own.
  it.each([1, 2])("refuses an unknown input field naming it, without its value (run %i)", async () => {
    const before = await t.clients.platform.deployment.count();
    const res = await post({ query: create, variables: { i: { projectId, password: "hunter2-secret" } } });
    expect(res.status).toBe(400);
    expect(res.json.errors).toHaveLength(1);
    expect(res.json.errors![0].extensions).toEqual({ code: "BAD_USER_INPUT", field: "variables.i.password" });
    expect(res.text).not.toContain("hunter2-secret");
    expect(res.json.data).toBeUndefined();
    expect(await t.clients.platform.deployment.count()).toBe(before);
  });

  it.each([1, 2])("refuses a value of the wrong type naming its path, without the value (run %i)", async () => {
    const res = await post({ query: create, variables: { i: { projectId, branch: 918273645 } } });
    expect(res.status).toBe(400);
    expect(res.json.errors!.map((e) => e.extensions)).toEqual([{ code: "BAD_USER_INPUT", field: "variables.i.branch" }]);
    expect(res.json.errors![0].message).toMatch(/String/);
    expect(res.text).not.toContain("918273645");
  });

  it("refuses a missing required variable and a missing required field", async () => {
    const missing = await post({ query: create, variables: {} });
    expect(missing.status).toBe(400);
    expect(missing.json.errors!.map((e) => e.extensions)).toEqual([{ code: "BAD_USER_INPUT", field: "variables.i" }]);
    const noProject = await post({ query: create, variables: { i: { branch: "main" } } });
    expect(noProject.status).toBe(400);
    expect(noProject.json.errors!.map((e) => e.extensions)).toEqual([{ code: "BAD_USER_INPUT", field: "variables.i.projectId" }]);
  });

  it("refuses a DateTime of year 0000 or 10000, as a literal or a variable, naming the field", async () => {
    const literal = await post({ query: `{ deployments(first: 5, filter: { createdAfter: "0000-01-01T00:00:00Z" }) { totalCount } }` });
    expect(literal.status).toBe(400);
    expect(literal.json.errors!.map((e) => e.extensions)).toEqual([{ code: "BAD_USER_INPUT", field: "deployments.filter.createdAfter" }]);
    const query = `query($f: DeploymentFilter) { deployments(first: 5, filter: $f) { totalCount } }`;
    for (const createdAfter of ["0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z"]) {
      const variable = await post({ query, variables: { f: { createdAfter } } });
      expect(variable.status).toBe(400);
      expect(variable.json.errors!.map((e) => e.extensions)).toEqual([{ code: "BAD_USER_INPUT", field: "variables.f.createdAfter" }]);
      expect(variable.text).not.toContain(createdAfter.slice(0, 5));
    }
    // The years a timestamptz holds still read.
    const fine = await post({ query, variables: { f: { createdAfter: "0001-01-01T00:00:00Z" } } });
    expect(fine.json.errors).toBeUndefined();
    expect(fine.status).toBe(200);
  });

  it("refuses a body without a query (an automatic persisted query's hash alone) with 400", async () => {
    const apq = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: "ab".repeat(32) } } });
    expect(apq.status).toBe(400);
    expect(apq.json.errors!.map((e) => e.extensions)).toEqual([{ code: "BAD_REQUEST", field: "query" }]);
    const none = await post({ variables: {} });
    expect(none.status).toBe(400);
    expect(none.json.errors![0].extensions).toEqual({ code: "BAD_REQUEST", field: "query" });
  });
});
