import { readFileSync } from "node:fs";
import { Kind, parse, print, type OperationDefinitionNode } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { GRAPHIQL_EXAMPLES, GRAPHIQL_OPERATIONS, GRAPHIQL_TOKEN_PLACEHOLDER, graphiqlOptions } from "../../src/http/graphiql.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { embeddedGraphiqlOptions } from "../helpers/graphiql-page.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import {
  ConfigureTenantDocument,
  CreateProjectDocument,
  DashboardDocument,
  DeploymentsPageDocument,
  DeploymentStatsDocument,
  DeploymentUpdatesDocument,
  SetTenantIdentityProviderDocument,
  TenantConfigDocument,
} from "../generated/operations.ts";
import { sseSubscribe } from "../helpers/live-client.ts";

/**
 * GraphiQL (issue 4, point 7): served offline, opening with the example
 * operations (the same text codegen types, so the examples always validate)
 * and a headers template for the demo tenant; and the examples run.
 */

function embeddedOptions(html: string): Record<string, any> {
  expect(html).toContain("renderYogaGraphiQL(");
  return embeddedGraphiqlOptions(html);
}

const operationNames = (source: string) =>
  parse(source).definitions.map((d) => (d as OperationDefinitionNode).name?.value);

describe("GraphiQL", () => {
  let t: TestApp;
  let html: string;
  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    const res = await t.app.fetch("http://localhost/graphql", { headers: { accept: "text/html" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    html = await res.text();
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  it("is served offline: every script and stylesheet inline, no CDN", () => {
    for (const cdn of ["unpkg", "jsdelivr", "cdn.", "esm.sh", "googleapis"]) expect(html).not.toContain(cdn);
    const external = [...html.matchAll(/<(?:script|link)[^>]+(?:src|href)=["']([^"']+)["']/g)].map((m) => m[1]!);
    for (const ref of external) expect(ref).not.toMatch(/^(https?:)?\/\//);
    // GraphiQL's bundle itself is inline (hundreds of kB), not fetched.
    const inline = html.split("<script").slice(1).map((chunk) => chunk.indexOf("</script>"));
    expect(Math.max(...inline)).toBeGreaterThan(100_000);
  });

  it("opens with the example document: the dashboard query, a paginated list, a mutation and a subscription", () => {
    const options = embeddedOptions(html);
    expect(options.defaultQuery).toBe(GRAPHIQL_EXAMPLES);
    expect(operationNames(options.defaultQuery)).toEqual([
      "Dashboard",
      "DeploymentsPage",
      "CreateProject",
      "DeploymentUpdates",
      "TenantConfig",
      "DeploymentStats",
      "SetTenantIdentityProvider",
      "ConfigureTenant",
    ]);
    expect(options.subscriptionsProtocol).toBe("SSE");
    expect(options.defaultQuery).toMatch(/projects\(first: \$first\)[\s\S]*deployments\(first: 5\)/);
    expect(options.defaultQuery).toMatch(/pageInfo[\s\S]*endCursor/);
    expect(options.defaultQuery).toMatch(/^mutation CreateProject/m);
    expect(options.title).toBe("tenantgraph");
  });

  it("opens with a headers template for the demo tenant (Authorization, X-Tenant-ID: acme)", () => {
    const options = embeddedOptions(html);
    const headers = JSON.parse(options.headers);
    expect(Object.keys(headers).sort()).toEqual(["Authorization", "X-Tenant-ID"]);
    expect(headers.Authorization).toMatch(/^Bearer /);
    expect(headers["X-Tenant-ID"]).toBe("acme");
    expect(options.isHeadersEditorEnabled).toBe(true);
  });

  it("shows the same operations codegen types (src/http/graphiql-examples.graphql)", () => {
    const file = readFileSync("src/http/graphiql-examples.graphql", "utf8");
    expect(GRAPHIQL_OPERATIONS).toBe(file);
    const typed = [
      DashboardDocument,
      DeploymentsPageDocument,
      CreateProjectDocument,
      DeploymentUpdatesDocument,
      TenantConfigDocument,
      DeploymentStatsDocument,
      SetTenantIdentityProviderDocument,
      ConfigureTenantDocument,
    ]
      .map((d) => print(d))
      .join("\n\n");
    expect(print(parse(GRAPHIQL_EXAMPLES))).toBe(typed);
  });

  it("the examples run as the demo developer with the template's X-Tenant-ID", async () => {
    const token = await t.token("developer@acme.test");
    const headers = { "x-tenant-id": JSON.parse(graphiqlOptions.headers!)["X-Tenant-ID"] };
    for (const operationName of ["Dashboard", "DeploymentsPage", "CreateProject"]) {
      const res = await t.app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...headers },
        body: JSON.stringify({ query: GRAPHIQL_EXAMPLES, operationName }),
      });
      const body = await res.json();
      expect(body.errors, `${operationName}: ${JSON.stringify(body.errors)}`).toBeUndefined();
      expect(body.data).toBeTruthy();
    }
  });

  it("the per-tenant configuration examples run for the callers their comments name", async () => {
    const run = async (operationName: string, token: string, variables: Record<string, unknown> = {}, headers: Record<string, string> = {}) => {
      const res = await t.app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...headers },
        body: JSON.stringify({ query: GRAPHIQL_EXAMPLES, operationName, variables }),
      });
      const body = await res.json();
      expect(body.errors, `${operationName}: ${JSON.stringify(body.errors)}`).toBeUndefined();
      return body.data;
    };
    const owner = await t.token("owner@acme.test");
    expect((await run("TenantConfig", owner, {}, { "x-tenant-id": "acme" })).tenant.features).toEqual(["api_access", "advanced_analytics"]);
    expect((await run("DeploymentStats", owner, {}, { "x-tenant-id": "acme" })).deploymentStats.length).toBeGreaterThan(0);
    const wayne = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "wayne" } })).id;
    const tenantId = Buffer.from(`Tenant:${wayne}`).toString("base64");
    const set = await run("SetTenantIdentityProvider", await t.token("owner@wayne.test"), { tenantId }, { "x-tenant-id": "wayne" });
    expect(set.setTenantIdentityProvider.tenant.slug).toBe("wayne");
    const configured = await run("ConfigureTenant", await t.adminToken(), { tenantId, features: null, domain: "api.wayne.example" });
    expect(configured.setTenantDomain.tenant.domain).toBe("api.wayne.example");
  });

  it("without the demo tenants the Authorization template is a placeholder, persisted headers allowed", () => {
    const options = embeddedOptions(html);
    expect(JSON.parse(options.headers).Authorization).toBe(`Bearer ${GRAPHIQL_TOKEN_PLACEHOLDER}`);
    expect(options.shouldPersistHeaders).toBe(true);
  });

  it("with a demo token signer, each page holds a fresh working token: the first operation runs as is", async () => {
    let signed = 0;
    const demo = createApp(
      testAppDeps(t.clients, t.store, {
        demoToken: async () => {
          signed++;
          return t.memberToken("acme", "OWNER");
        },
      }),
    );
    const page = await demo.fetch("http://localhost/graphql", { headers: { accept: "text/html" } });
    const options = embeddedOptions(await page.text());
    expect(signed).toBe(1);
    // Not persisted: a reload never keeps an old (expired) token over the fresh one.
    expect(options.shouldPersistHeaders).toBe(false);
    const headers = JSON.parse(options.headers) as Record<string, string>;
    expect(headers.Authorization).not.toContain(GRAPHIQL_TOKEN_PLACEHOLDER);
    // What GraphiQL sends on play: the editor's headers, the default document, its first operation.
    const first = operationNames(options.defaultQuery)[0];
    expect(first).toBe("Dashboard");
    const res = await demo.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ query: options.defaultQuery, operationName: first }),
    });
    const body = await res.json();
    expect(body.errors).toBeUndefined();
    expect(body.data.tenant.slug).toBe("acme");
    expect(body.data.projects.totalCount).toBeGreaterThan(0);
    // And the schema fetch GraphiQL starts with is accepted with the same headers (docs, autocompletion).
    const introspection = await demo.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ query: "{ __schema { queryType { name } } }" }),
    });
    expect((await introspection.json()).data.__schema.queryType.name).toBe("Query");
  });

  it("the README's first query is GraphiQL's first operation (what play runs)", () => {
    const readme = readFileSync("README.md", "utf8");
    const section = readme.slice(readme.indexOf("### The first five minutes"));
    const block = /```graphql\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block).toBeDefined();
    const dashboard = parse(GRAPHIQL_OPERATIONS).definitions[0]!;
    expect(print(parse(block!))).toBe(print({ kind: Kind.DOCUMENT, definitions: [dashboard] }));
  });

  it("the subscription example runs over SSE as GraphiQL sends it", async () => {
    const token = await t.token("viewer@acme.test");
    const headers = { authorization: `Bearer ${token}`, "x-tenant-id": "acme" };
    const s = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query: GRAPHIQL_EXAMPLES, operationName: "DeploymentUpdates" }, headers);
    const projects = await t.gql(`{ projects(first: 1) { edges { node { id name } } } }`, { token, headers: { "x-tenant-id": "acme" } });
    const project = projects.body.data.projects.edges[0].node;
    const created = await t.gql(`mutation($p: ID!) { createDeployment(input: { projectId: $p }) { deployment { id } } }`, {
      token: await t.token("developer@acme.test"),
      headers: { "x-tenant-id": "acme" },
      variables: { p: project.id },
    });
    const event = await s.nextData();
    expect(event.deploymentUpdated).toMatchObject({ id: created.body.data.createDeployment.deployment.id, status: "QUEUED", project: { name: project.name } });
    s.close();
  });

  it("is not served when GRAPHIQL is off", async () => {
    const off = createApp(testAppDeps(t.clients, t.store, { config: { graphiql: false, introspection: false, production: true } }));
    const res = await off.fetch("http://localhost/graphql", { headers: { accept: "text/html" } });
    const text = await res.text();
    expect(text).not.toContain("renderYogaGraphiQL");
    expect(text).not.toContain("Dashboard");
  });
});
