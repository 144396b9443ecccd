import type pg from "pg";
import { placementKey, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";
import { copyTenant } from "./placement-copy.ts";
import { checkFences, moveFenceSql } from "./placement-fence.ts";
import { connect, directoryNames, openRead, release, routeIn } from "./placement-move-connections.ts";
import { MoveAbandoned, MoveVerificationFailed } from "./placement-move-errors.ts";
import { dropHeld, stagingSchemaOf } from "./placement-move-journal.ts";
import { routeOf } from "./placement-route.ts";
import { pgQuery, tablesOf } from "./placement-rows.ts";
import { nameIn, nameOn, persist, switchOn } from "./placement-switch.ts";
import { compareCopy, printsNow, printsOf } from "./placement-verify.ts";

/**
 * One move of a tenant under its move lock, step by step (docs/placement.md,
 * "Moving a tenant"): the target, the fence, the snapshot and the copy, the
 * verification, the switch, then the old placement dropped; on a failure
 * before the switch, everything undone and the tenant left where it was.
 */

export interface Move {
  from: PlacementRef;
  to: PlacementRef;
  rows: number;
  /** Per table, `count:checksum` as verified. */
  tables: Record<string, string>;
  durationMs: number;
  /** From the fence taken to the fence released: how long the tenant's writes were refused. */
  writesRefusedMs: number;
  /** What could not be finished after the switch (the move itself holds): an old placement left to drop, say. */
  leftovers: string[];
}

export interface MoveOptions {
  /** Longest wait for the tenant's writes in flight to end before the move gives up (ms). */
  fenceTimeoutMs?: number;
  /** Tables copied at once (default 3). */
  copyWorkers?: number;
  now?: () => number;
}

/** A CREATE SCHEMA / CREATE DATABASE that failed because the object exists (42P06 duplicate_schema, 42P04 duplicate_database; 23505 when two CREATEs race). */
const isAlreadyExists = (err: unknown) => ["42P06", "42P04", "23505"].includes((err as { code?: string } | null)?.code ?? "");

/** Tables copied (or compared) at once: each a connection on either side. */
const COPY_WORKERS = 3;

export async function moveLocked(
  admin: PlacementAdmin,
  main: pg.Client,
  tenantId: string,
  from: PlacementRef,
  to: PlacementRef,
  now: () => number,
  started: number,
  options: MoveOptions,
  journal: string,
  /** What a failed move could not undo (its journal row then stays). */
  undone: string[],
): Promise<Move> {
  const toPooled = to.placement === "POOLED";
  // The target is created and migrated before the fence: writes are refused for the copy alone.
  // Dropped on failure only once this move's CREATE succeeded: a placement it did not make is never dropped.
  let made = false;
  if (!toPooled) {
    // Under the move lock, with the directory naming `from`: a target that
    // exists is what a move that crashed or failed left (a half-made target,
    // an old copy not dropped), never the tenant's live copy: removed.
    if (await admin.exists(to)) await dropHeld(admin, main, to);
    try {
      await admin.create(to);
    } catch (err) {
      // Created but not migrated: still this move's (a CREATE that failed as "exists already" raced another creator: not ours).
      if (!isAlreadyExists(err)) await dropHeld(admin, main, to).catch((e: unknown) => undone.push(`the target was not dropped (${String(e)})`));
      throw err;
    }
    made = true;
  }
  // The fence is in the source database (the tenant's mutations take it
  // there: src/modules/platform/placement.service.ts refuseWhileMoving),
  // the latter on the move lock's connection.
  let sourceFence = main;
  try {
    if (from.placement === "DATABASE") sourceFence = await connect(admin, from);
  } catch (err) {
    if (made) await dropHeld(admin, main, to).catch((e: unknown) => undone.push(`the target was not dropped (${String(e)})`));
    throw err;
  }
  const fences = sourceFence === main ? [main] : [sourceFence, main];
  const releaseSource = () => (sourceFence === main ? Promise.resolve() : release(sourceFence));
  // The switch runs on the main database's fence connection, and a DATABASE
  // source's mark on its own: a fence lost before their COMMIT fails them.
  let fenced = false;
  let writesRefusedMs = 0;
  const unfence = async () => {
    if (!fenced) return;
    fenced = false;
    for (const fence of fences) {
      // A failed switch leaves its transaction open on the fence connection.
      await fence.query("ROLLBACK");
      await fence.query(`SELECT pg_advisory_unlock(${moveFenceSql("$1::text")})`, [tenantId]);
    }
    writesRefusedMs = now() - fencedAt;
  };
  let fencedAt = now();
  let marked = false;
  let copied: { rows: number; tables: Record<string, string> } = { rows: 0, tables: {} };
  /** The switch's COMMIT was sent: whether it committed, only the directory row can tell. */
  let switching = false;
  const staging = toPooled ? stagingSchemaOf(tenantId) : null;
  // On the move lock's connection: a move that lost its lock leaves the schema to the one holding it.
  const dropStaging = async () => {
    if (staging) await main.query(`DROP SCHEMA IF EXISTS "${staging}" CASCADE`);
  };
  let snap: pg.Client | undefined;
  try {
    // Into the main database the rows are staged in a schema of the move's (made before the fence, like a target; one a crashed move left is replaced).
    if (staging) {
      await main.query(`DROP SCHEMA IF EXISTS "${staging}" CASCADE; CREATE SCHEMA "${staging}"; ${tablesOf(to).map((t) => `CREATE UNLOGGED TABLE "${staging}"."${t}" (LIKE public."${t}")`).join("; ")}`);
    }
    fencedAt = now();
    for (const fence of fences) {
      await fence.query(`SET lock_timeout = ${Math.max(1, Math.trunc(options.fenceTimeoutMs ?? 10_000))}`);
      fenced = true;
      await fence.query(`SELECT pg_advisory_lock(${moveFenceSql("$1::text")})`, [tenantId]);
      await fence.query("RESET lock_timeout");
    }
    // Read again behind the fence: the switch names the target only if the directory still names the source.
    if ((await routeIn(main, tenantId)) !== routeOf(from)) throw new MoveAbandoned("the directory no longer names the tenant's source");
    // One snapshot of the source, exported to the copy's connections.
    snap = await openRead(admin, from, tenantId);
    const [exported] = (await snap.query<{ id: string }>("SELECT pg_export_snapshot() AS id")).rows;
    const workers = Math.max(1, options.copyWorkers ?? COPY_WORKERS);
    const rows = await copyTenant(admin, tenantId, from, to, staging, exported!.id, workers);
    // The source as it is now, and (into a SCHEMA or DATABASE) the copy, table by table, several at once.
    const tables = tablesOf(to);
    const counters = tables.filter((t) => t === "usage_counters");
    const [current, copy, countersThen] = await Promise.all([
      printsNow(admin, from, tenantId, tables.filter((t) => t !== "usage_counters"), to, workers),
      staging ? null : printsNow(admin, to, tenantId, tables, to, workers),
      printsOf(pgQuery(snap), tenantId, counters, false),
    ]);
    const expected = { ...current, ...countersThen };
    copied = { rows, tables: expected };
    if (copy) await compareCopy(snap, tenantId, to, expected, copy);
    // Still fenced: else the move is abandoned (the target dropped, the tenant stays).
    await checkFences(fences);
    // The old copy's tenants row names the target BEFORE the switch commits,
    // inside the fence: a request a stale directory entry routes there is
    // refused (its facts' route differs) from then on. A SCHEMA source's row
    // is in the main database: marked in the switch's own transaction. A
    // DATABASE source's is marked on its fence connection (committed only if
    // the fence held until then) and made to name itself again if the move
    // fails; a mover that dies between the mark and the switch leaves the
    // tenant refused (fails closed) until a move of it succeeds.
    if (from.placement === "DATABASE") {
      marked = true;
      await nameOn(sourceFence, tenantId, null, to);
    }
    await switchOn(main, tenantId, from, to, staging, journal, (copy) => compareCopy(snap!, tenantId, to, expected, copy), () => {
      switching = true;
    });
  } catch (err) {
    // A switch whose COMMIT went out before the connection broke may have
    // committed: the directory row decides. Naming the target, the move
    // holds (finished below); unknown (the main database unreachable), the
    // old copy stays marked and the target stays: refused, never two copies.
    const switched = !switching ? false : await directoryNames(admin, tenantId, to).catch(() => undefined);
    await release(snap);
    if (switched !== true) {
      // A step that failed because a fence connection died (the switch runs on one): abandoned, like a fence found lost.
      for (const f of fences) await f.query("ROLLBACK").catch(() => {});
      const lost = fenced && !(err instanceof MoveAbandoned) && !(err instanceof MoveVerificationFailed) && (await checkFences(fences).then(() => false, () => true));
      // Undone by the holder of the move lock only (one that lost it leaves the tenant refused, failing closed, to the next move).
      if (switched === undefined) undone.push("the switch's outcome is unknown (the directory could not be read)");
      if (switched === false && marked) await checkFences([main]).then(() => nameIn(admin, tenantId, from, from)).catch((e: unknown) => undone.push(`the old copy's mark was not undone (${String(e)})`));
      if (fenced) await unfence().catch(() => {});
      await releaseSource();
      if (made && switched === false) await dropHeld(admin, main, to).catch((e: unknown) => undone.push(`the target was not dropped (${String(e)})`));
      await dropStaging().catch((e: unknown) => undone.push(`the staging schema was not dropped (${String(e)})`));
      throw lost ? new MoveAbandoned("the move's write fence was lost") : err;
    }
  }
  // Switched: the directory names the target, nothing drops it, and nothing
  // from here on fails the move (the caller must still evict the directory
  // cache and audit it); what could not be finished is reported.
  await release(snap);
  const leftovers: string[] = [];
  // A DATABASE target's tenants row names the source until now (another
  // database: no transaction spans both): every request there is refused
  // until this mark, as it was before the switch. Not marked (its server
  // unreachable), the tenant stays refused (fails closed) until the mark is
  // retried: the move's journal keeps it (settleMoves).
  if (to.placement === "DATABASE") {
    await persist(() => nameIn(admin, tenantId, to, to)).catch((err: unknown) => leftovers.push(`the new placement's tenants row was not made to name it (${String(err)}); the tenant is refused until it is`));
  }
  await unfence().catch((err: unknown) => leftovers.push(`the fence was not released (${String(err)}); its connection's end releases it`));
  await releaseSource();
  await dropStaging().catch((err: unknown) => leftovers.push(`the staging schema ${staging} was not dropped (${String(err)})`));
  // Requests that were reading the old copy may hold its tables: DROP then
  // waits for them, or deadlocks with one and is tried again.
  if (from.placement !== "POOLED") {
    await persist(() => dropHeld(admin, main, from)).catch((err: unknown) => leftovers.push(`the old placement ${placementKey(from)} was not dropped (${String(err)})`));
  }
  // Finished: the journal row goes. Else it stays, with what is left, for the next move of the tenant or the sweep (settleMoves).
  await (leftovers.length
    ? main.query(`UPDATE placement_moves SET last_error = $2, updated_at = now() WHERE id = $1`, [journal, leftovers.join("; ")])
    : main.query(`DELETE FROM placement_moves WHERE id = $1`, [journal])
  ).catch((err: unknown) => leftovers.push(`the move's journal row was not updated (${String(err)})`));
  if (leftovers.length) leftovers.push("retried by the next move of the tenant and the sweep of unfinished moves (placement_moves)");
  return { from, to, rows: copied.rows, tables: copied.tables, durationMs: now() - started, writesRefusedMs, leftovers };
}
