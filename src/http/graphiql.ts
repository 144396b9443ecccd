import { readFileSync } from "node:fs";
import type { GraphiQLOptions } from "graphql-yoga";

/**
 * What a developer sees on opening GraphiQL: the dashboard query, a
 * paginated list and a mutation, with a headers template for the demo
 * tenant (the token is printed by `npm start` and `npm run token`).
 *
 * The operations live in src/http/graphiql-examples.graphql, which codegen also
 * reads (typed documents DashboardDocument, ... that the tests send): one
 * text, so the examples cannot drift from what is tested.
 */
export const GRAPHIQL_OPERATIONS = readFileSync(new URL("./graphiql-examples.graphql", import.meta.url), "utf8");

export const GRAPHIQL_EXAMPLES = `# Welcome to tenantgraph. Paste a demo token (printed by \`npm start\` and
# \`npm run token\`) into the Authorization header below, then run one of
# these operations.

${GRAPHIQL_OPERATIONS}`;

/** The seeded demo tenant the header template points at. */
export const GRAPHIQL_DEMO_TENANT = "acme";

export const graphiqlOptions: GraphiQLOptions = {
  title: "tenantgraph",
  defaultQuery: GRAPHIQL_EXAMPLES,
  // Yoga hands `headers` to GraphiQL as `defaultHeaders`: the header editor of
  // every new tab starts from this template.
  headers: JSON.stringify({ Authorization: "Bearer <paste a demo token>", "X-Tenant-ID": GRAPHIQL_DEMO_TENANT }, null, 2),
  isHeadersEditorEnabled: true,
  shouldPersistHeaders: true,
};
