import { readFileSync } from "node:fs";

/**
 * The server's dashboard statement as the golden SQL file records it
 * (test/__sql__/Dashboard.sql), and its parameters for a tenant and a
 * caller: what bench/pg-cost.ts, message-cost.ts and relation-joins.ts send.
 */
export const dashboardStatement = readFileSync(new URL("../test/__sql__/Dashboard.sql", import.meta.url), "utf8")
  .split("\n")
  .find((l) => /^app: (WITH|SELECT).* FROM projects c /.test(l))!
  .slice("app: ".length);

export function dashboardValues(tenant: string, user: string): (string | number)[] {
  const values: (string | number)[] = [];
  let limits = 0;
  for (const m of dashboardStatement.matchAll(/(app_visible_user\(u\.id, \$\d+::uuid, )?(LIMIT )?\$(\d+)/g)) {
    values[Number(m[3]) - 1] = m[2] ? (limits++ === 0 ? 21 : 6) : m[1] ? user : tenant;
  }
  // The caller is the third argument of app_visible_user.
  for (const m of dashboardStatement.matchAll(/app_visible_user\(u\.id, \$\d+::uuid, \$(\d+)::uuid\)/g)) values[Number(m[1]) - 1] = user;
  return values;
}

/**
 * The bench dashboard's SQL-planned statement (test/__sql__/BenchDashboard.sql,
 * docs/sql-plans.md): the whole answer's JSON text; its parameters for a
 * tenant and a caller (page sizes 20 and 5, LIMITs 1, 6 and 21 in the order
 * the text has them).
 */
export const plannedDashboardStatement = readFileSync(new URL("../test/__sql__/BenchDashboard.sql", import.meta.url), "utf8")
  .split("\n")
  .find((l) => l.startsWith("app: ") && l.includes(`SELECT '{"data":'`))!
  .slice("app: ".length);

export function plannedDashboardValues(tenant: string, user: string): (string | number)[] {
  const values: (string | number)[] = [];
  const sizes = [20, 5];
  const limits = [1, 6, 21];
  for (const m of plannedDashboardStatement.matchAll(/(LIMIT |<= )?\$(\d+)/g)) {
    values[Number(m[2]) - 1] = m[1] === "LIMIT " ? limits.shift()! : m[1] === "<= " ? sizes.shift()! : tenant;
  }
  // The caller is the third argument of app_visible_user.
  for (const m of plannedDashboardStatement.matchAll(/app_visible_user\(u\.id, \$\d+::uuid, \$(\d+)::uuid\)/g)) values[Number(m[1]) - 1] = user;
  return values;
}
