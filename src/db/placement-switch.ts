import type pg from "pg";
import type { PlacementAdmin, PlacementRef } from "./placement-admin.ts";
import { columnsOf } from "./placement-copy.ts";
import { connect, release } from "./placement-move-connections.ts";
import { MoveAbandoned, MoveVerificationFailed } from "./placement-move-errors.ts";
import { NAME_SQL, nameParams, ROUTE_SQL, routeOf } from "./placement-route.ts";
import { beginCopy, pgQuery, recountStats, tablesOf, TENANT_TABLES, tenantRowsWhere } from "./placement-rows.ts";
import { placementSyncLockSql } from "./placement-sync.ts";
import { printsOf } from "./placement-verify.ts";

/**
 * Step 5 of a move (docs/placement.md, "Moving a tenant"): the switch, in
 * one transaction of the main database on the fence's connection, and the
 * marks on a copy's tenants row that name where the tenant lives.
 */

/** The shared tables a tenant's data rows leave when it leaves POOLED (children first). */
const DATA_TABLES = ["deployments", "workflows", "projects", "idempotency_keys"] as const;

/**
 * Moving into the main database (to POOLED), its directory rows there are
 * replaced by the placement's (which decided the tenant's requests), children
 * first. Its API request counters stay (they are always counted in the main
 * database), and so do the platform's cross-tenant audit entries.
 */
const REPLACED_IN_MAIN = [
  "deployments",
  "workflows",
  "projects",
  "idempotency_keys",
  "api_keys",
  "memberships",
  "tenant_limit_overrides",
  "tenant_cache_generations",
] as const;

/**
 * Step 5, on the main database's fence connection (a fence lost before the
 * COMMIT fails it): the directory row names the target; to POOLED the staged
 * rows replace the main database's rows of the tenant and are verified;
 * leaving POOLED the tenant's data rows leave the shared tables; a SCHEMA
 * source's tenants row names the target too, and so does a SCHEMA
 * target's (it named the source until now).
 */
export async function switchOn(
  fence: pg.Client,
  tenantId: string,
  from: PlacementRef,
  to: PlacementRef,
  staging: string | null,
  journal: string,
  verify: (copy: Record<string, string>) => Promise<void>,
  committing: () => void,
) {
  await beginCopy(fence, tenantId, null);
  // After the directory syncs of the source in flight (src/db/placement-sync.ts): one that follows sees the switch and does nothing.
  await fence.query(`SELECT pg_advisory_xact_lock(${placementSyncLockSql("$1::text")})`, [tenantId]);
  // The platform admins among the identities the tenant brings, as the main database (their authority) has them before the switch.
  const admins = staging ? await platformAdminsAmong(fence, `SELECT id FROM "${staging}".users`, []) : "";
  if (staging) await replaceFromStaging(fence, tenantId, staging);
  // Only if the directory still names the source (a compare-and-set): else abandoned, nothing changed.
  const named = await fence.query(`${NAME_SQL()} AND ${ROUTE_SQL} = $5`, [...nameParams(tenantId, to), routeOf(from)]);
  if (named.rowCount !== 1) throw new MoveAbandoned("the directory no longer names the tenant's source");
  if (from.placement === "SCHEMA") await fence.query(NAME_SQL(from.name), nameParams(tenantId, to));
  // A SCHEMA target's row (it named the source since the copy) names the target with the switch, atomically; a DATABASE target's right after the switch commits.
  if (to.placement === "SCHEMA") await fence.query(NAME_SQL(to.name), nameParams(tenantId, to));
  if (from.placement === "POOLED") {
    for (const table of DATA_TABLES) await fence.query(`DELETE FROM "${table}" WHERE tenant_id = $1`, [tenantId]);
    await fence.query(`DELETE FROM audit_log WHERE tenant_id = $1 AND NOT cross_tenant`, [tenantId]);
  }
  // The main database's analytics counters follow its rows of the tenant: all of them to POOLED (the copy fires no trigger), the directory's (members, API requests) only when it leaves.
  if (staging || from.placement === "POOLED") await recountStats(pgQuery(fence), tenantId);
  if (staging) {
    await verify(await printsOf(pgQuery(fence), tenantId, tablesOf(to), true));
    // Identities are compared by presence, and by their platform flag here: the main database's own, never a placement's copy's.
    if ((await platformAdminsAmong(fence, `SELECT x.id FROM users x WHERE ${tenantRowsWhere("users")}`, [tenantId])) !== admins) {
      throw new MoveVerificationFailed(tenantId, to, ["users (is_platform_admin)"]);
    }
  }
  // The journal says the switch committed with it (a crash from here on: the sweep finishes the move rather than undoing it).
  await fence.query(`UPDATE placement_moves SET state = 'switched', updated_at = now() WHERE id = $1`, [journal]);
  committing();
  await fence.query("COMMIT");
}

/** The platform admins (main database) among the users `ids` (SQL) selects, as one string. */
async function platformAdminsAmong(main: pg.Client, ids: string, params: unknown[]): Promise<string> {
  const { rows } = await main.query<{ ids: string }>(`SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') AS ids FROM users WHERE is_platform_admin AND id IN (${ids})`, params);
  return rows[0]?.ids ?? "";
}

/**
 * Into the main database: its rows of the tenant (directory rows included:
 * the placement's decided its requests) are replaced by the staged ones; the
 * tenants row is updated in place (other rows refer to it); identities and
 * the platform's cross-tenant audit entries already there stay.
 */
async function replaceFromStaging(main: pg.Client, tenantId: string, staging: string): Promise<void> {
  // An API key's last use is written where the tenant lives (src/tenancy/last-used.ts), and the main database's copy may hold an older one from before: the later of the two stays.
  await main.query(
    `UPDATE "${staging}".api_keys s SET last_used_at = greatest(s.last_used_at, a.last_used_at) FROM api_keys a WHERE a.tenant_id = $1 AND s.tenant_id = a.tenant_id AND s.id = a.id`,
    [tenantId],
  );
  for (const table of REPLACED_IN_MAIN) await main.query(`DELETE FROM "${table}" x WHERE ${tenantRowsWhere(table)}`, [tenantId]);
  await main.query(`DELETE FROM audit_log WHERE tenant_id = $1 AND NOT cross_tenant`, [tenantId]);
  for (const table of TENANT_TABLES) {
    if (table === "usage_counters") continue;
    const cols = await columnsOf(main, table);
    if (table === "tenants") {
      // The placement columns are the directory's own (the switch names the target, if the directory still names the source).
      const set = cols.filter((c) => !["id", "placement", "placement_server", "placement_name"].includes(c)).map((c) => `${c} = s.${c}`).join(", ");
      const res = await main.query(`UPDATE tenants SET ${set} FROM "${staging}".tenants s WHERE tenants.id = s.id AND tenants.id = $1`, [tenantId]);
      if (res.rowCount !== 1) throw new Error("the directory row of the tenant is missing");
      continue;
    }
    const keep = table === "users" || table === "audit_log" ? " ON CONFLICT DO NOTHING" : "";
    // Identities: only new ones come in (an existing one is never overwritten), and never with
    // platform powers: a placement's copy of a user the main database deleted (an offboarded admin)
    // is not the authority for a global fact (the directory sync's rule, src/db/placement-sync.ts).
    const values = cols.map((c) => (table === "users" && c === "is_platform_admin" ? "false" : c)).join(", ");
    await main.query(`INSERT INTO "${table}" (${cols.join(", ")}) SELECT ${values} FROM "${staging}"."${table}"${keep}`);
  }
}

/** A copy's tenants row made to name `names`, in a transaction of its own on `client`. */
export async function nameOn(client: pg.Client, tenantId: string, schema: string | null, names: PlacementRef): Promise<void> {
  await beginCopy(client, tenantId, schema);
  await client.query(NAME_SQL(), nameParams(tenantId, names));
  await client.query("COMMIT");
}

/** The same on a connection of its own, tried again on a transient failure (the undoing of a mark). */
export async function nameIn(admin: PlacementAdmin, tenantId: string, copy: PlacementRef, names: PlacementRef): Promise<void> {
  await persist(async () => {
    const c = await connect(admin, copy);
    try {
      await nameOn(c, tenantId, copy.placement === "SCHEMA" ? copy.name : null, names);
    } finally {
      await release(c);
    }
  });
}

/** A step after the switch (it cannot be undone): tried again on a transient failure such as a deadlock with a reader. */
export async function persist(step: () => Promise<unknown>, attempts = 5): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      await step();
      return;
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 50 * i));
    }
  }
}
