import type { App } from "../../src/app.ts";

/** What the SQL-planned queries' tests send (test/integration/sql-plans*.test.ts). */

/** The bench's dashboard (bench/scenarios.ts). */
export const BENCH_DASHBOARD = `{ projects(first: 20) { edges { node { id name slug deploymentCount latestDeployment { id status createdAt } deployments(first: 5) { edges { node { id status branch commitSha createdAt createdBy { email } } } } } } } }`;

/** POST /graphql to `app`: status, body text, X-Cache. */
export async function post(app: App, query: string, headers: Record<string, string>, variables?: Record<string, unknown>) {
  const res = await app.fetch("http://localhost/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, text: await res.text(), cache: res.headers.get("x-cache") };
}

/** The planned statement: the response's JSON text built by PostgreSQL (after its lookups' common table expressions). */
export const isPlanned = (statements: { sql: string }[]) => statements.some((s) => /^(WITH .* )?SELECT '\{"data":' \|\| /.test(s.sql));

