import type pg from "pg";
import type { PlacementRef } from "./placement-admin.ts";

/**
 * A tenant's rows, table by table, between two placements (provisioning
 * writes the first ones into a new placement; moveTenant copies them all):
 * read as JSON from the source, written with jsonb_populate_recordset (every
 * placement runs the same migrations, so the columns are the same), and
 * compared by count and checksum.
 *
 * The tables, parents first. `users` holds the identities the tenant's rows
 * refer to (members, deployment creators): global identities, copied (never
 * moved) so the placement's foreign keys and joins hold. `tenant_stats` and
 * `tenant_request_totals` (the analytics counters) are not among them: they
 * are derived from these rows, and every copy recounts them in its target
 * (recountStats) instead.
 */
export const TENANT_TABLES = [
  "tenants",
  "users",
  "memberships",
  "projects",
  "deployments",
  "workflows",
  "api_keys",
  "audit_log",
  "usage_counters",
  "idempotency_keys",
  "tenant_limit_overrides",
  "tenant_cache_generations",
] as const;
export type TenantTable = (typeof TENANT_TABLES)[number];

/** The tables a move copies and compares, the largest first (the parallel copy and prints hand them out in this order). */
export function tablesOf(to: PlacementRef): TenantTable[] {
  const large: TenantTable[] = ["deployments", "audit_log", "projects", "workflows", "idempotency_keys"];
  // Into the main database the API request counters stay its own (they are always counted there).
  return [...large, ...TENANT_TABLES.filter((t) => !large.includes(t))].filter((t) => !(to.placement === "POOLED" && t === "usage_counters"));
}

/** The rows of `table` that are the tenant's ($1: its id). */
export function tenantRowsWhere(table: TenantTable): string {
  if (table === "tenants") return "id = $1::uuid";
  if (table === "users") {
    return `id IN (SELECT user_id FROM memberships WHERE tenant_id = $1::uuid
                   UNION SELECT created_by_id FROM deployments WHERE tenant_id = $1::uuid AND created_by_id IS NOT NULL)`;
  }
  return "tenant_id = $1::uuid";
}

/** Something that runs a query with parameters and answers rows (a pg client, a Prisma transaction). */
export type Query = <R>(sql: string, params: unknown[]) => Promise<R[]>;

export const pgQuery =
  (client: Pick<pg.ClientBase, "query">): Query =>
  async <R>(sql: string, params: unknown[]) =>
    (await client.query(sql, params)).rows as R[];

/** The tenant's rows of one table, as one JSON array. */
export async function readRows(source: Query, table: TenantTable, tenantId: string): Promise<unknown[]> {
  const [row] = await source<{ rows: unknown[] }>(
    `SELECT coalesce(jsonb_agg(to_jsonb(x)), '[]'::jsonb) AS rows FROM "${table}" x WHERE ${tenantRowsWhere(table)}`,
    [tenantId],
  );
  return row?.rows ?? [];
}

/** Inserts rows read by readRows (rows already there are kept with `keepExisting`, as users always are: identities are shared). */
export async function writeRows(target: Query, table: TenantTable, rows: unknown[], keepExisting = table === "users"): Promise<number> {
  if (rows.length === 0) return 0;
  const conflict = keepExisting ? "ON CONFLICT DO NOTHING" : "";
  await target(`INSERT INTO "${table}" SELECT * FROM jsonb_populate_recordset(NULL::"${table}", $1::jsonb) ${conflict}`, [JSON.stringify(rows)]);
  return rows.length;
}

/**
 * The tenant's analytics counters (`tenant_stats`, `tenant_request_totals`) recounted from its rows
 * in the copy's target, inside the copy's transaction, once its rows are
 * written: a copy's writes run as a replica (beginCopy), so the counters'
 * triggers do not fire; copying the counters row instead would count twice
 * wherever they do. Every writer that opens beginCopy and writes counted
 * rows (memberships, projects, workflows, deployments, usage_counters) calls
 * this before its COMMIT.
 */
export async function recountStats(target: Query, tenantId: string): Promise<void> {
  await target(`SELECT app_tenant_stats_recount($1::uuid)`, [tenantId]);
}

/**
 * Opens the copy's transaction on an owner connection of the target: its
 * triggers and foreign-key triggers do not fire (the source is consistent,
 * and a cache-generation trigger must not invent rows the source lacks),
 * and RLS sees the tenant.
 */
export async function beginCopy(target: Pick<pg.ClientBase, "query">, tenantId: string, schema: string | null): Promise<void> {
  await target.query(
    `BEGIN; SET LOCAL session_replication_role = replica; SELECT set_config('app.tenant_id', $$${checkedId(tenantId)}$$, true)${
      schema ? `, set_config('search_path', '"${schema}"', true)` : ""
    }`,
  );
}

/** The tenant id, checked to be a UUID's characters (it is written into SQL as a literal). */
export function checkedId(id: string): string {
  if (!/^[0-9a-f-]{36}$/i.test(id)) throw new Error("invalid tenant id");
  return id;
}
