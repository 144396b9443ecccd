import { placementKey, POOLED, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";
import { beginCopy, fingerprint, pgQuery, readRows, TENANT_TABLES, writeRows } from "./placement-rows.ts";

/**
 * Relocating a POOLED tenant into a new SCHEMA or DATABASE placement, with
 * its writes stopped by the caller (docs/placement.md, "Relocation"):
 *   1. the placement is created and migrated;
 *   2. every row of the tenant is copied from one REPEATABLE READ snapshot of
 *      the main database, in one transaction of the placement;
 *   3. per table, the count and a checksum of the copy are compared with the
 *      snapshot's; any difference (or error) drops the placement and leaves
 *      the tenant where it was;
 *   4. in one transaction of the main database the directory row switches to
 *      the placement and the tenant's data rows leave the shared tables (its
 *      directory rows stay: they are the directory entry; its API request
 *      counters stay: they are counted in the main database).
 * The caller evicts the directory's cache entry of the tenant.
 */

/** The shared tables a relocated tenant's rows leave (children first). */
const DATA_TABLES = ["deployments", "workflows", "projects", "idempotency_keys"] as const;

export interface Relocation {
  rows: number;
  tables: Record<string, string>;
}

export async function relocatePooledTenant(admin: PlacementAdmin, tenantId: string, to: PlacementRef): Promise<Relocation> {
  if (to.placement === "POOLED") throw new Error("relocation goes to a SCHEMA or DATABASE placement");
  // A placement that exists already is never dropped here (the catch below drops only ours).
  await admin.create(to);
  try {
    const source = await admin.ownerClient(POOLED, "directory");
    let sourcePrints: Record<string, string>;
    let rows = 0;
    try {
      await source.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      const target = await admin.ownerClient(to);
      try {
        await beginCopy(target, tenantId, to.placement === "SCHEMA" ? to.name : null);
        const from = pgQuery(source);
        for (const table of TENANT_TABLES) rows += await writeRows(pgQuery(target), table, await readRows(from, table, tenantId));
        sourcePrints = await fingerprint(from, tenantId);
        const copied = await fingerprint(pgQuery(target), tenantId);
        const differ = Object.keys(sourcePrints).filter((t) => sourcePrints[t] !== copied[t as keyof typeof copied]);
        if (differ.length) throw new Error(`relocation of ${tenantId} to ${placementKey(to)}: ${differ.join(", ")} differ after the copy`);
        await target.query("COMMIT");
        target.release();
      } catch (err) {
        target.release(err as Error);
        throw err;
      }
      await source.query("COMMIT");
      source.release();
    } catch (err) {
      source.release(err as Error);
      throw err;
    }
    const main = await admin.ownerClient(POOLED, "directory");
    try {
      await beginCopy(main, tenantId, null);
      await main.query(`UPDATE tenants SET placement = $2, placement_server = $3, placement_name = $4 WHERE id = $1`, [tenantId, to.placement, to.server, to.name]);
      for (const table of DATA_TABLES) await main.query(`DELETE FROM "${table}" WHERE tenant_id = $1`, [tenantId]);
      await main.query(`DELETE FROM audit_log WHERE tenant_id = $1 AND NOT cross_tenant`, [tenantId]);
      await main.query("COMMIT");
      main.release();
    } catch (err) {
      main.release(err as Error);
      throw err;
    }
    return { rows, tables: sourcePrints };
  } catch (err) {
    await admin.drop(to).catch(() => {});
    throw err;
  }
}
