import pg from "pg";
import { dashboardStatement, dashboardValues, plannedDashboardStatement, plannedDashboardValues } from "./dashboard-statement.ts";
import { readFileSync } from "node:fs";
import { runMain } from "./options.ts";

/**
 * PostgreSQL's own cost of a dashboard's data statement, without the server:
 *
 *   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/tenantgraph_bench npx tsx bench/pg-cost.ts
 *
 * On one connection as tenantgraph_app, inside a transaction with the RLS
 * settings (as the server and the floor run them), for each of the first 20
 * tenants: EXPLAIN (ANALYZE) of the server's statement and of the floor's; prints the medians of
 * planning and execution time. Then times 200 executions of each, unnamed
 * (parsed and planned every time, as the server sends it) and as a named
 * prepared statement (as the floor sends it).
 */
const url = process.env.DATABASE_URL;
if (!url) throw new Error("DATABASE_URL (the bench database) is required");
const floorSql = /const DASHBOARD_SQL = `([\s\S]*?)`;/.exec(readFileSync(new URL("./floor-server.ts", import.meta.url), "utf8"))![1]!;

/**
 * The server's statement as test/__sql__/Dashboard.sql records it (the
 * GraphiQL example's dashboard: 20 projects, latestDeployment and 5
 * deployments each), with its parameters by position: LIMITs 21 (projects)
 * and 6 (deployments), the caller in app_visible_user, the tenant elsewhere.
 */
const golden = dashboardStatement;
const serverValues = dashboardValues;
const serverSql = golden;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const client = new pg.Client({ connectionString: url, options: "-c role=tenantgraph_app" });
  await client.connect();
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const { rows: pairs } = await admin.query<{ tenant_id: string; user_id: string }>(
    `SELECT DISTINCT ON (m.tenant_id) m.tenant_id, m.user_id FROM memberships m ORDER BY m.tenant_id, m.role LIMIT 20`,
  );
  await admin.end();
  const inTx = async <T>(p: { tenant_id: string; user_id: string }, fn: () => Promise<T>) => {
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
    await client.query(`SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true), set_config('app.api_key_id', '', true)`, [p.tenant_id, p.user_id]);
    try {
      return await fn();
    } finally {
      await client.query("COMMIT");
    }
  };
  const plans: Record<string, { planning: number[]; execution: number[] }> = {
    server: { planning: [], execution: [] },
    planned: { planning: [], execution: [] },
    floor: { planning: [], execution: [] },
  };
  for (let round = 0; round < 3; round++) {
    for (const p of pairs) {
      for (const [name, sql, values] of [
        ["server", serverSql, serverValues(p.tenant_id, p.user_id)],
        ["planned", plannedDashboardStatement, plannedDashboardValues(p.tenant_id, p.user_id)],
        ["floor", floorSql, [p.tenant_id]],
      ] as const) {
        const { rows } = await inTx(p, () => client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, [...values]));
        const plan = (rows[0] as { "QUERY PLAN": { "Planning Time": number; "Execution Time": number }[] })["QUERY PLAN"][0]!;
        if (round > 0) {
          plans[name]!.planning.push(plan["Planning Time"]);
          plans[name]!.execution.push(plan["Execution Time"]);
        }
      }
    }
  }
  for (const [name, f] of Object.entries(plans)) {
    console.log(`${name}: planning ${median(f.planning).toFixed(3)} ms, execution ${median(f.execution).toFixed(3)} ms (EXPLAIN ANALYZE medians, ${f.execution.length} runs)`);
  }
  for (const [name, sql, named] of [
    ["server unnamed", serverSql, false],
    ["server prepared", serverSql, true],
    ["planned unnamed", plannedDashboardStatement, false],
    ["planned prepared", plannedDashboardStatement, true],
    ["floor prepared", floorSql, true],
  ] as const) {
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const p = pairs[i % pairs.length]!;
      const values = name.startsWith("floor") ? [p.tenant_id] : name.startsWith("planned") ? plannedDashboardValues(p.tenant_id, p.user_id) : serverValues(p.tenant_id, p.user_id);
      await inTx(p, async () => {
        const t0 = process.hrtime.bigint();
        await client.query(named ? { name: name.replace(/\W/g, "_"), text: sql, values } : { text: sql, values });
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      });
    }
    console.log(`${name}: ${median(times.slice(20)).toFixed(3)} ms per statement, wall (median of 180, one connection)`);
  }
  await client.end();
}

runMain(main);
