import type pg from "pg";
import type { Placement } from "../generated/prisma/enums.ts";
import { placementFor, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";
import { checkFences } from "./placement-fence.ts";
import { connect, release, routeIn } from "./placement-move-connections.ts";
import { NAME_SQL, nameParams, ROUTE_SQL, routeOf } from "./placement-route.ts";
import { beginCopy } from "./placement-rows.ts";

/**
 * The journal of moves (table placement_moves, main database): every move
 * is written there before it touches anything and removed once everything
 * is done; what a crash, a failed undo or a leftover after the switch
 * leaves there is settled by the next move of the tenant or the sweep
 * (docs/placement.md, "Moving a tenant").
 */

/** The schema of the main database where a move into it (to POOLED) stages the copied rows: `tg_move_<id hex>`. */
export const stagingSchemaOf = (tenantId: string) => `tg_move_${placementFor(tenantId, "SCHEMA").name!.slice("tenant_".length)}`;

/**
 * Drops a placement the move made or replaces, only while the move lock is
 * proven held on `main` (the backend that took it answers): a move that lost
 * it leaves the placement to the move holding it now (which may have made
 * it again, or switched to it), or to a purge.
 */
export async function dropHeld(admin: PlacementAdmin, main: pg.Client, ref: PlacementRef): Promise<void> {
  await checkFences([main], "the move lock was lost; left for the next move or a purge");
  await admin.drop(ref);
}

/** A move's journal row (main database, owner only), written under the move lock before the move touches anything; answers its id. */
export async function journalStart(main: pg.Client, tenantId: string, from: PlacementRef, to: PlacementRef): Promise<string> {
  const { rows } = await main.query<{ id: string }>(
    `INSERT INTO placement_moves (tenant, from_placement, from_server, to_placement, to_server) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
    [tenantId, from.placement, from.server, to.placement, to.server],
  );
  return rows[0]!.id;
}

interface JournalRow {
  id: string;
  from_placement: Placement;
  from_server: string | null;
  to_placement: Placement;
  to_server: string | null;
}

/**
 * Settles the tenant's journal rows (moves that crashed, failed without
 * undoing everything, or switched with leftovers), on `main` holding the
 * tenant's move lock (no move of it runs). With the directory row as it is
 * now: of the placements a row names (its source and target), the one the
 * directory names is the tenant's live copy, whose tenants row is made to
 * name it (an old copy's mark a failed switch could not undo, a new
 * DATABASE copy's mark not made after the switch); any other is what a move
 * left (a target never switched to, an old copy not dropped) and is dropped
 * (only with the lock proven held), as is the staging schema. A row settled
 * is removed; a failure stays in it (`attempts`, `last_error`) for the next
 * try. Answers the failures. Names derive from the tenant's id.
 */
export async function settleLocked(admin: PlacementAdmin, main: pg.Client, tenantId: string): Promise<string[]> {
  const { rows } = await main.query<JournalRow>(
    `SELECT id, from_placement, from_server, to_placement, to_server FROM placement_moves WHERE tenant = $1 ORDER BY started_at, id`,
    [tenantId],
  );
  if (rows.length === 0) return [];
  const route = await routeIn(main, tenantId);
  const failures: string[] = [];
  for (const row of rows) {
    try {
      for (const ref of [placementFor(tenantId, row.from_placement, row.from_server), placementFor(tenantId, row.to_placement, row.to_server)]) {
        if (ref.placement === "POOLED") await main.query(`DROP SCHEMA IF EXISTS "${stagingSchemaOf(tenantId)}" CASCADE`);
        else if (routeOf(ref) === route) await healIn(admin, tenantId, ref);
        else await dropHeld(admin, main, ref);
      }
      await main.query(`DELETE FROM placement_moves WHERE id = $1`, [row.id]);
    } catch (err) {
      failures.push(String(err));
      await main.query(`UPDATE placement_moves SET attempts = attempts + 1, last_error = $2, updated_at = now() WHERE id = $1`, [row.id, String(err)]).catch(() => {});
    }
  }
  return failures;
}

/** The live copy's tenants row made to name that copy, if it names another (a mark left behind). */
async function healIn(admin: PlacementAdmin, tenantId: string, ref: PlacementRef): Promise<void> {
  const c = await connect(admin, ref);
  try {
    await beginCopy(c, tenantId, ref.placement === "SCHEMA" ? ref.name : null);
    await c.query(`${NAME_SQL()} AND ${ROUTE_SQL} IS DISTINCT FROM $5`, [...nameParams(tenantId, ref), routeOf(ref)]);
    await c.query("COMMIT");
  } finally {
    await release(c);
  }
}
