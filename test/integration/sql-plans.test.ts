import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { createSqlCounter, ofPool, type SqlCounter } from "../helpers/sql-counter.ts";

const DASHBOARD = `{ projects(first: 20) { edges { node { id name slug deploymentCount latestDeployment { id status createdAt } deployments(first: 5) { edges { node { id status branch commitSha createdAt createdBy { email } } } } } } } }`;

async function post(app: App, query: string, headers: Record<string, string>, variables?: Record<string, unknown>) {
  const res = await app.fetch("http://localhost/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, text: await res.text() };
}

describe("smoke", () => {
  let t: TestApp;
  let off: App;
  let counter: SqlCounter;
  beforeAll(async () => {
    t = await createTestApp();
    off = createApp(testAppDeps(t.clients, t.store, { config: { sqlPlans: false } }));
    counter = createSqlCounter({ app: Object.values(t.clients.appPools), platform: t.clients.platformPool });
  });
  afterAll(async () => {
    counter?.detach();
    await t?.close();
  });
  it("dashboard", async () => {
    const token = await t.memberToken("acme", "VIEWER");
    const h = { authorization: `Bearer ${token}` };
    await post(t.app, DASHBOARD, h);
    const on = await counter.record(() => post(t.app, DASHBOARD, h));
    const o = await post(off, DASHBOARD, h);
    console.log(ofPool(on.statements, "app").map((s) => s.sql.slice(0, 3000)).join("\n"));
    console.log(on.result.text.slice(0, 500));
    console.log(o.text.slice(0, 500));
    expect(on.result.text).toBe(o.text);
  });
});
