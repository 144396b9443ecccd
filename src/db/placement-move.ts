import type { Placement } from "../generated/prisma/enums.ts";
import { DEFAULT_SERVER, placementFor, placementKey, placementOf, POOLED, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";
import { moveLockSql } from "./placement-fence.ts";
import { connect, onMain, release, routeIn } from "./placement-move-connections.ts";
import { MoveInProgress } from "./placement-move-errors.ts";
import { journalStart, settleLocked, stagingSchemaOf } from "./placement-move-journal.ts";
import { moveLocked, type Move, type MoveOptions } from "./placement-move-steps.ts";
import { routeOf } from "./placement-route.ts";
import { checkedId } from "./placement-rows.ts";

/**
 * Moving a tenant between placements, live, one move of a tenant at a time,
 * every move journaled until it is done; and the sweep that settles what
 * unfinished moves left. The design, step by step, with its failure cases:
 * docs/placement.md, "Moving a tenant". The steps: placement-move-steps.ts.
 */

/** The tenant's placement as the main database's directory row says (null: no such tenant). */
export async function currentPlacement(admin: PlacementAdmin, tenantId: string): Promise<PlacementRef | null> {
  const main = await connect(admin, POOLED);
  try {
    const [row] = (await main.query<{ placement: Placement; placementServer: string | null; placementName: string | null }>(
      `SELECT placement, placement_server AS "placementServer", placement_name AS "placementName" FROM tenants WHERE id = $1`,
      [tenantId],
    )).rows;
    return row ? placementOf(row) : null;
  } finally {
    await release(main);
  }
}

/** Moves the tenant's rows from `from` to `to` (docs/placement.md, "Moving a tenant"); throws, leaving the tenant where it was, on any failure. */
export async function moveTenantRows(admin: PlacementAdmin, tenantId: string, from: PlacementRef, to: PlacementRef, options: MoveOptions = {}): Promise<Move> {
  if (placementKey(from) === placementKey(to)) throw new Error("the tenant is already in that placement");
  const now = options.now ?? Date.now;
  const started = now();
  // One move of a tenant at a time (two admins, a client retrying after a
  // timeout): the other is refused before it looks at the target, so it can
  // never drop a placement this one made. A session lock, on the connection
  // of the main database that later holds the fence there and commits the
  // switch: a mover that dies releases it, and a move whose lock is gone
  // (its backend terminated, an idle-session timeout) cannot switch either,
  // so a second move that took the lock meanwhile may replace its target.
  const main = await connect(admin, POOLED);
  try {
    const [lock] = (await main.query<{ held: boolean }>(`SELECT pg_try_advisory_lock(${moveLockSql("$1::text")}) AS held`, [tenantId])).rows;
    if (!lock?.held) throw new MoveInProgress(tenantId);
    // What earlier moves of the tenant left unfinished (a crash, a failed undo, an old copy not dropped) first; a failure stays in the journal.
    await settleLocked(admin, main, tenantId).catch(() => {});
    // Read under the lock: a move that finished between the caller's look and this lock has changed it.
    if ((await routeIn(main, tenantId)) !== routeOf(from)) throw new Error("the tenant's placement changed before the move began");
    // The move is journaled before it touches anything: a crash leaves the row, which the next move or the sweep settles.
    const journal = await journalStart(main, tenantId, from, to);
    const undone: string[] = [];
    try {
      return await moveLocked(admin, main, tenantId, from, to, now, started, options, journal, undone);
    } catch (err) {
      // Failed with everything undone: the journal row goes. Else (a target not dropped, the old copy's mark
      // not undone, the switch's outcome unknown) it stays, for the next move of the tenant or the sweep.
      await (undone.length
        ? main.query(`UPDATE placement_moves SET last_error = $2, updated_at = now() WHERE id = $1`, [journal, `${String(err)}; left: ${undone.join("; ")}`])
        : main.query(`DELETE FROM placement_moves WHERE id = $1`, [journal])
      ).catch(() => {});
      throw err;
    }
  } finally {
    // Ending the session releases the lock.
    await release(main);
  }
}

/**
 * The sweep of unfinished moves (server start-up and every few minutes,
 * src/server.ts): every tenant with journal rows whose move lock is free (a
 * move under way is left alone) is settled as a move of it settles them first
 * (settleLocked, placement-move-journal.ts). Answers how many
 * tenants were settled and the failures (kept in their rows for the next sweep).
 */
export async function settleMoves(admin: PlacementAdmin): Promise<{ settled: number; failures: string[] }> {
  const main = await connect(admin, POOLED);
  try {
    const { rows } = await main.query<{ tenant: string }>(`SELECT DISTINCT tenant::text AS tenant FROM placement_moves ORDER BY 1`);
    let settled = 0;
    const failures: string[] = [];
    for (const { tenant } of rows) {
      const [lock] = (await main.query<{ held: boolean }>(`SELECT pg_try_advisory_lock(${moveLockSql("$1::text")}) AS held`, [tenant])).rows;
      if (!lock?.held) continue;
      try {
        const failed = await settleLocked(admin, main, tenant);
        if (failed.length) failures.push(...failed.map((f) => `tenant ${tenant}: ${f}`));
        else settled++;
      } finally {
        await main.query(`SELECT pg_advisory_unlock(${moveLockSql("$1::text")})`, [tenant]);
      }
    }
    return { settled, failures };
  } finally {
    await release(main);
  }
}

/**
 * After a purge (the directory row gone): whatever a move of the tenant that
 * crashed or failed may have left (its SCHEMA name, its DATABASE name on
 * every server, the staging schema) is dropped, so no copy of a purged
 * tenant's rows stays behind. Names derived from the tenant's id: never
 * another tenant's.
 */
export async function dropMoveLeftovers(admin: PlacementAdmin, tenantId: string): Promise<void> {
  const refs = [placementFor(tenantId, "SCHEMA"), ...[DEFAULT_SERVER, ...Object.keys(admin.servers)].map((server) => placementFor(tenantId, "DATABASE", server))];
  for (const ref of refs) await admin.drop(ref);
  await onMain(admin, `DROP SCHEMA IF EXISTS "${stagingSchemaOf(tenantId)}" CASCADE`);
  // Nothing of the tenant's moves is left to settle (the tenant id is checked: it named the placements above).
  await onMain(admin, `DELETE FROM placement_moves WHERE tenant = '${checkedId(tenantId)}'`);
}

/** A POOLED tenant into a new SCHEMA or DATABASE placement (the test helper's spread; same path as a live move). */
export async function relocatePooledTenant(admin: PlacementAdmin, tenantId: string, to: PlacementRef): Promise<Move> {
  if (to.placement === "POOLED") throw new Error("relocation goes to a SCHEMA or DATABASE placement");
  return moveTenantRows(admin, tenantId, POOLED, to);
}
