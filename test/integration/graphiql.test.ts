import { readFileSync } from "node:fs";
import { parse, print, type OperationDefinitionNode } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { GRAPHIQL_EXAMPLES, GRAPHIQL_OPERATIONS, graphiqlOptions } from "../../src/http/graphiql.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { CreateProjectDocument, DashboardDocument, DeploymentsPageDocument } from "../generated/operations.ts";

/**
 * GraphiQL (issue 4, point 7): served offline, opening with the example
 * operations (the same text codegen types, so the examples always validate)
 * and a headers template for the demo tenant; and the examples run.
 */

/** The options object renderGraphiQL embeds: `renderYogaGraphiQL(root, {...})`. */
function embeddedOptions(html: string): Record<string, any> {
  const start = html.indexOf("renderYogaGraphiQL(");
  expect(start).toBeGreaterThan(0);
  const open = html.indexOf("{", html.indexOf(",", start));
  // JSON.stringify output: find the matching brace, skipping string contents.
  let depth = 0;
  let inString = false;
  for (let i = open; i < html.length; i++) {
    const c = html[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return JSON.parse(html.slice(open, i + 1));
  }
  throw new Error("no options object in the GraphiQL page");
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

  it("opens with the example document: the dashboard query, a paginated list and a mutation", () => {
    const options = embeddedOptions(html);
    expect(options.defaultQuery).toBe(GRAPHIQL_EXAMPLES);
    expect(operationNames(options.defaultQuery)).toEqual(["Dashboard", "DeploymentsPage", "CreateProject"]);
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
    const typed = [DashboardDocument, DeploymentsPageDocument, CreateProjectDocument].map((d) => print(d)).join("\n\n");
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

  it("is not served when GRAPHIQL is off", async () => {
    const off = createApp(testAppDeps(t.clients, t.store, { config: { graphiql: false, introspection: false, production: true } }));
    const res = await off.fetch("http://localhost/graphql", { headers: { accept: "text/html" } });
    const text = await res.text();
    expect(text).not.toContain("renderYogaGraphiQL");
    expect(text).not.toContain("Dashboard");
  });
});
