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
 * tenant and a caller (page sizes 20 and 5; LIMITs 21, 1 and 6 by the page's alias).
 */
export const plannedDashboardStatement = readFileSync(new URL("../test/__sql__/BenchDashboard.sql", import.meta.url), "utf8")
  .split("\n")
  .find((l) => l.startsWith("app: ") && l.includes(`SELECT '{"data":'`))!
  .slice("app: ".length);

export function plannedDashboardValues(tenant: string, user: string): (string | number)[] {
  const values: (string | number)[] = [];
  for (const m of plannedDashboardStatement.matchAll(/\$(\d+)/g)) values[Number(m[1]) - 1] = tenant;
  // By the alias a page has: sp1 the projects (20 + 1), sp2 latestDeployment (1), sp3 the deployments (5 + 1).
  const take: Record<string, number> = { sp1: 21, sp2: 1, sp3: 6 };
  const size: Record<string, number> = { sp1: 20, sp3: 5 };
  for (const m of plannedDashboardStatement.matchAll(/LIMIT \$(\d+)\)(?: x\))? (sp\d+)/g)) values[Number(m[1]) - 1] = take[m[2]!]!;
  for (const m of plannedDashboardStatement.matchAll(/(sp\d+)\.plan_n <= \$(\d+)/g)) values[Number(m[2]) - 1] = size[m[1]!]!;
  // The caller is the third argument of app_visible_user.
  for (const m of plannedDashboardStatement.matchAll(/app_visible_user\(u\.id, \$\d+::uuid, \$(\d+)::uuid\)/g)) values[Number(m[1]) - 1] = user;
  return values;
}
