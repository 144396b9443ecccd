import type pg from "pg";
import type { PlacementAdmin, PlacementRef } from "./placement-admin.ts";
import { inParallel } from "./placement-copy.ts";
import { openRead } from "./placement-move-connections.ts";
import { MoveAbandoned, MoveVerificationFailed } from "./placement-move-errors.ts";
import { pgQuery, tenantRowsWhere, type Query, type TenantTable } from "./placement-rows.ts";

/**
 * A move's proof that the copy is the tenant (step 4 of docs/placement.md,
 * "Moving a tenant"): per table, the row count and a checksum of the copy
 * against the source's.
 */

/** Per table of `tables`, the tenant's row count and a checksum, as far as a move must keep them equal. */
export async function printsOf(source: Query, tenantId: string, tables: readonly TenantTable[], toPooled: boolean): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const table of tables) {
    // The placement columns name where the row is: the copy's say the target.
    // An API key's last use is a hint written outside the fence (src/tenancy/last-used.ts): not compared.
    const json =
      table === "tenants" ? `to_jsonb(x) - 'placement' - 'placement_server' - 'placement_name'` : table === "api_keys" ? `to_jsonb(x) - 'last_used_at'` : "to_jsonb(x)";
    let where = tenantRowsWhere(table);
    // Into the main database, its own cross-tenant entries stay beside the copied ones.
    if (toPooled && table === "audit_log") where += " AND NOT cross_tenant";
    // Identities are global: the main database's copy is the authority, so only their presence is compared.
    const hash = table === "users" ? "x.id::text" : `md5((${json})::text)`;
    const [r] = await source<{ n: number; sum: string | null }>(
      `SELECT count(*)::int AS n, md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS sum FROM (SELECT ${hash} AS h FROM "${table}" x WHERE ${where}) rows`,
      [tenantId],
    );
    out[table] = `${r?.n ?? 0}:${r?.sum ?? ""}`;
  }
  return out;
}

/** The prints of `tables` in `ref` as it is now, several tables at once. */
export async function printsNow(admin: PlacementAdmin, ref: PlacementRef, tenantId: string, tables: readonly TenantTable[], to: PlacementRef, workers: number) {
  const out: Record<string, string> = {};
  await inParallel(tables, workers, async () => [await openRead(admin, ref, tenantId)], async ([c], table) => {
    Object.assign(out, await printsOf(pgQuery(c!), tenantId, [table], to.placement === "POOLED"));
  });
  return out;
}

/**
 * Step 4: per table, the copy's prints must be the source's as it is now
 * (the API request counters: as the snapshot has them, they are counted
 * outside the fence). A table that differs is looked at in the snapshot: if
 * the source changed since (a write past the fence), the move is abandoned;
 * else the copy is wrong: MoveVerificationFailed. Either way it rolls back.
 */
export async function compareCopy(snap: pg.Client, tenantId: string, to: PlacementRef, source: Record<string, string>, copy: Record<string, string>): Promise<void> {
  const differ = Object.keys(source).filter((t) => source[t] !== copy[t]);
  if (differ.length === 0) return;
  const then = await printsOf(pgQuery(snap), tenantId, differ as TenantTable[], to.placement === "POOLED");
  const changed = differ.filter((t) => then[t] !== source[t]);
  if (changed.length) throw new MoveAbandoned(`the tenant's ${changed.join(", ")} changed during the copy (a write past the fence)`);
  throw new MoveVerificationFailed(tenantId, to, differ);
}
