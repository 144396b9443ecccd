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
