import { readFileSync } from "node:fs";
import type { GraphiQLOptions } from "graphql-yoga";

/**
 * What a developer sees on opening GraphiQL: the dashboard query, a
 * paginated list and a mutation, with a headers template for the demo
 * tenant. Outside production, with the demo tenants seeded, the template
 * holds a working token (acme OWNER, fresh for each page load), so the
 * first operation runs by pressing play; otherwise a placeholder for a token
 * printed by `npm start` or `npm run token`.
 *
 * The operations live in src/http/graphiql-examples.graphql, which codegen also
 * reads (typed documents DashboardDocument, ... that the tests send): one
 * text, so the examples cannot drift from what is tested.
 */
export const GRAPHIQL_OPERATIONS = readFileSync(new URL("./graphiql-examples.graphql", import.meta.url), "utf8");

export const GRAPHIQL_EXAMPLES = `# Welcome to tenantgraph. Press play (or Ctrl-Enter) and pick Dashboard.
# The Authorization header below holds a demo token when the demo tenants are
# seeded; otherwise paste one (printed by \`npm start\` and \`npm run token\`).

${GRAPHIQL_OPERATIONS}`;

/** The seeded demo tenant the header template points at. */
export const GRAPHIQL_DEMO_TENANT = "acme";

export const GRAPHIQL_TOKEN_PLACEHOLDER = "<paste a demo token>";

const headersTemplate = (token: string) =>
  JSON.stringify({ Authorization: `Bearer ${token}`, "X-Tenant-ID": GRAPHIQL_DEMO_TENANT }, null, 2);

export const graphiqlOptions: GraphiQLOptions = {
  title: "tenantgraph",
  defaultQuery: GRAPHIQL_EXAMPLES,
  // Yoga hands `headers` to GraphiQL as `defaultHeaders`: the header editor of
  // every new tab starts from this template.
  headers: headersTemplate(GRAPHIQL_TOKEN_PLACEHOLDER),
  isHeadersEditorEnabled: true,
  // Subscriptions from GraphiQL go over GraphQL over SSE, through the same
  // context builder and headers as its queries.
  subscriptionsProtocol: "SSE",
  shouldPersistHeaders: true,
};

/**
 * The GraphiQL options of an app: with `demoToken` (a signer of acme OWNER
 * tokens, given by the server outside production when the demo tenants
 * exist), each page load gets a fresh token in its header template. Headers
 * are then not persisted in the browser, so a reload never keeps an
 * expired token over the fresh one.
 */
export function graphiqlOptionsFor(demoToken?: () => Promise<string>): GraphiQLOptions | (() => Promise<GraphiQLOptions>) {
  if (!demoToken) return graphiqlOptions;
  return async () => ({ ...graphiqlOptions, headers: headersTemplate(await demoToken()), shouldPersistHeaders: false });
}
