import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../helpers/app.ts";

describe("the app over a seeded database", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => t?.close());

  it("answers the dashboard query for a member", async () => {
    const res = await t.gql(
      `{ tenant { slug plan } projects(first: 2) { totalCount edges { node { name deploymentCount latestDeployment { status } deployments(first: 5) { edges { node { status createdBy { email } } } } } } } }`,
      { token: await t.memberToken("acme", "VIEWER") },
    );
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.tenant).toEqual({ slug: "acme", plan: "PRO" });
    expect(res.body.data.projects.totalCount).toBe(4);
    expect(res.body.data.projects.edges).toHaveLength(2);
    expect(res.body.data.projects.edges[0].node.deployments.edges).toHaveLength(5);
    expect(res.headers.get("x-tenant-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("creates a project as a developer and lists it", async () => {
    const token = await t.memberToken("acme", "DEVELOPER");
    const created = await t.gql(`mutation { createProject(input: { name: "Smoke Test" }) { project { id slug } } }`, { token });
    expect(created.body.errors).toBeUndefined();
    expect(created.body.data.createProject.project.slug).toBe("smoke-test");
    const list = await t.gql(`{ projects(filter: { search: "smoke" }) { totalCount } }`, { token });
    expect(list.body.data.projects.totalCount).toBe(1);
    const audit = await t.clients.platform.auditLogEntry.count({ where: { action: "project.create" } });
    expect(audit).toBe(1);
    // Gone again: the dashboard test counts the seed's projects, in whichever order the tests run.
    expect((await t.clients.platform.project.deleteMany({ where: { tenant: { slug: "acme" }, slug: "smoke-test" } })).count).toBe(1);
  });
});
