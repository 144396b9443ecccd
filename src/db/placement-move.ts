import pg from "pg";
import type { Placement } from "../generated/prisma/enums.ts";
import { DEFAULT_SERVER, placementFor, placementKey, placementOf, POOLED, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";
import { columnsOf, copyInParallel, inParallel } from "./placement-copy.ts";
import { placementSyncLockSql } from "./placement-sync.ts";
import { beginCopy, checkedId, pgQuery, recountStats, TENANT_TABLES, tenantRowsWhere, type Query, type TenantTable } from "./placement-rows.ts";

/**
 * Moving a tenant between placements, live (docs/placement.md, "Moving a
 * tenant"):
 *   0. one move of a tenant at a time (a session lock in the main
 *      database); the target placement (SCHEMA/DATABASE) is created and
 *      migrated, replacing one a crashed or failed move left; to POOLED a
 *      staging schema is made instead. All before the fence: migrations do
 *      not need the writes stopped;
 *   1. fence: an exclusive advisory lock on the tenant's move key in the
 *      source database. Every mutation's opening message takes the same key
 *      shared with a *try* (src/tenancy/tenant-db.ts): while the mover waits
 *      for the writes in flight or holds the key, new writes are refused
 *      with TENANT_MOVING (retryable); reads never take it and continue;
 *   2. one REPEATABLE READ snapshot of the source, exported;
 *   3. every table copied with COPY (source TO STDOUT piped into target
 *      FROM STDIN), several tables at once, each connection on the exported
 *      snapshot (src/db/placement-copy.ts);
 *   4. per table, the count and a checksum of the copy are compared with the
 *      source's, read afresh (several tables at once); a difference is
 *      looked up in the snapshot: the source changed (a write past the
 *      fence: MoveAbandoned) or the copy is wrong (MoveVerificationFailed).
 *      Either way, and on any error, the target is dropped and the tenant
 *      stays where it was;
 *   5. the switch, in one transaction of the main database ON THE FENCE'S
 *      CONNECTION (a fence lost before its COMMIT fails it): the directory
 *      row names the target; to POOLED the staged rows replace the main
 *      database's and are verified there; leaving POOLED the tenant's data
 *      rows leave the shared tables; a placed source's tenants row names the
 *      target (a DATABASE source's just before, on its own fence connection),
 *      so a request a stale directory cache routes there is refused; the
 *      target's tenants row, which named the source since the copy (every
 *      request a stale route sent there refused), names the target: a
 *      SCHEMA target's in the switch, a DATABASE target's just after;
 *   6. the fence is released and the old placement dropped.
 * The caller evicts the directory's cache entries of the tenant. Every move
 * is journaled (table placement_moves) from its start until everything is
 * done; what a crash, a failed undo or a leftover after the switch leaves
 * there is settled by the next move of the tenant or the sweep (settleMoves).
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

/** The advisory-lock key that fences a tenant's writes during a move (taken shared by every mutation). */
export const moveFenceSql = (tenantIdLiteral: string) => `hashtext('tenant-move:' || ${tenantIdLiteral})`;

/** The advisory-lock key (main database, session) that one move of a tenant holds from start to end. */
const moveLockSql = (tenantIdLiteral: string) => `hashtext('tenant-mover:' || ${tenantIdLiteral})`;

/** A CREATE SCHEMA / CREATE DATABASE that failed because the object exists (42P06 duplicate_schema, 42P04 duplicate_database; 23505 when two CREATEs race). */
const isAlreadyExists = (err: unknown) => ["42P06", "42P04", "23505"].includes((err as { code?: string } | null)?.code ?? "");

/** The route PostgreSQL reports for a tenant's rows (facts `route`), as a placement names it. */
export const routeOf = (ref: PlacementRef) => [ref.placement, ref.server, ref.name].filter(Boolean).join(":");

/** The same, as SQL over a tenants row: `POOLED`, `SCHEMA:<name>`, `DATABASE:<server>:<name>` (two databases of one name on two servers differ). */
export const ROUTE_SQL = `placement::text || coalesce(':' || placement_server, '') || coalesce(':' || placement_name, '')`;

/** The tables a move copies and compares, the largest first (the parallel copy and prints hand them out in this order). */
function tablesOf(to: PlacementRef): TenantTable[] {
  const large: TenantTable[] = ["deployments", "audit_log", "projects", "workflows", "idempotency_keys"];
  // Into the main database the API request counters stay its own (they are always counted there).
  return [...large, ...TENANT_TABLES.filter((t) => !large.includes(t))].filter((t) => !(to.placement === "POOLED" && t === "usage_counters"));
}

/** Per table of `tables`, the tenant's row count and a checksum, as far as a move must keep them equal. */
async function printsOf(source: Query, tenantId: string, tables: readonly TenantTable[], toPooled: boolean): Promise<Record<string, string>> {
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

/**
 * A connection of the move's own (the fence, the snapshot, the copy and the
 * switch may all be on one database at once: never the owner pool's two).
 */
async function connect(admin: PlacementAdmin, ref: PlacementRef): Promise<pg.Client> {
  // TCP keepalive: a mover host gone without a reset is noticed in a minute, not after the kernel's two hours (its fence then released).
  const client = new pg.Client({ connectionString: admin.databaseUrl(ref), keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
  client.on("error", () => {});
  await client.connect();
  return client;
}

async function release(client: pg.Client | undefined) {
  await client?.end().catch(() => {});
}

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

/** Moves the tenant's rows from `from` to `to` (see above); throws, leaving the tenant where it was, on any failure. */
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

/** The route the main database's directory row of the tenant names (undefined: no such tenant). */
async function routeIn(main: pg.Client, tenantId: string): Promise<string | undefined> {
  return (await main.query<{ route: string }>(`SELECT ${ROUTE_SQL} AS route FROM tenants WHERE id = $1`, [tenantId])).rows[0]?.route;
}

/**
 * Drops a placement the move made or replaces, only while the move lock is
 * proven held on `main` (the backend that took it answers): a move that lost
 * it leaves the placement to the move holding it now (which may have made
 * it again, or switched to it), or to a purge.
 */
async function dropHeld(admin: PlacementAdmin, main: pg.Client, ref: PlacementRef): Promise<void> {
  await checkFences([main], "the move lock was lost; left for the next move or a purge");
  await admin.drop(ref);
}

/** The directory row (or a copy's tenants row) made to name a placement. */
const NAME_SQL = (schema: string | null = null) =>
  `UPDATE ${schema ? `"${schema}".` : ""}tenants SET placement = $2, placement_server = $3, placement_name = $4 WHERE id = $1`;
const nameParams = (tenantId: string, ref: PlacementRef) => [tenantId, ref.placement, ref.server, ref.name];

/** The schema of the main database where a move into it (to POOLED) stages the copied rows: `tg_move_<id hex>`. */
const stagingSchemaOf = (tenantId: string) => `tg_move_${placementFor(tenantId, "SCHEMA").name!.slice("tenant_".length)}`;

async function moveLocked(
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

/** One statement on the main database as its owner, on a connection of its own. */
async function onMain(admin: PlacementAdmin, sql: string): Promise<void> {
  const c = await connect(admin, POOLED);
  try {
    await c.query(sql);
  } finally {
    await release(c);
  }
}

/**
 * The fence is a session lock: it holds as long as its backend does. A query
 * on each fence connection answered by the backend that took the lock proves
 * it was held throughout (a terminated backend, a reset connection: the lock
 * is gone, writes may have committed after the snapshot).
 */
async function checkFences(fences: pg.Client[], lost = "the move's write fence was lost"): Promise<void> {
  for (const fence of fences) {
    const pid = await fence.query<{ pid: number }>("SELECT pg_backend_pid() AS pid").then((r) => r.rows[0]?.pid, () => undefined);
    if (pid === undefined || pid !== (fence as unknown as { processID: number }).processID) throw new MoveAbandoned(lost);
  }
}

/** Whether the main database's directory row of the tenant names `ref`. */
async function directoryNames(admin: PlacementAdmin, tenantId: string, ref: PlacementRef): Promise<boolean> {
  const main = await connect(admin, POOLED);
  try {
    const [row] = (await main.query<{ route: string }>(`SELECT ${ROUTE_SQL} AS route FROM tenants WHERE id = $1`, [tenantId])).rows;
    return row?.route === routeOf(ref);
  } finally {
    await release(main);
  }
}

/** A copy's tenants row made to name `names`, in a transaction of its own on `client`. */
async function nameOn(client: pg.Client, tenantId: string, schema: string | null, names: PlacementRef): Promise<void> {
  await beginCopy(client, tenantId, schema);
  await client.query(NAME_SQL(), nameParams(tenantId, names));
  await client.query("COMMIT");
}

/** The same on a connection of its own, tried again on a transient failure (the undoing of a mark). */
async function nameIn(admin: PlacementAdmin, tenantId: string, copy: PlacementRef, names: PlacementRef): Promise<void> {
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
async function persist(step: () => Promise<unknown>, attempts = 5): Promise<void> {
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

/** Tables copied (or compared) at once: each a connection on either side. */
const COPY_WORKERS = 3;

/** A read transaction on a placement (RLS sees the tenant; a SCHEMA alone on the path), on the exported snapshot `snapshot` if given. */
const SNAPSHOT_ID = /^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$/i;
async function openRead(admin: PlacementAdmin, ref: PlacementRef, tenantId: string, snapshot: string | null = null): Promise<pg.Client> {
  if (snapshot !== null && !SNAPSHOT_ID.test(snapshot)) throw new Error("unexpected snapshot id");
  const c = await connect(admin, ref);
  try {
    await c.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY${snapshot ? `; SET TRANSACTION SNAPSHOT '${snapshot}'` : ""}`);
    await c.query(`SELECT set_config('app.tenant_id', $1, true)${ref.placement === "SCHEMA" ? `, set_config('search_path', '"${ref.name}"', true)` : ""}`, [tenantId]);
    return c;
  } catch (err) {
    await release(c);
    throw err;
  }
}

/** The prints of `tables` in `ref` as it is now, several tables at once. */
async function printsNow(admin: PlacementAdmin, ref: PlacementRef, tenantId: string, tables: readonly TenantTable[], to: PlacementRef, workers: number) {
  const out: Record<string, string> = {};
  await inParallel(tables, workers, async () => [await openRead(admin, ref, tenantId)], async ([c], table) => {
    Object.assign(out, await printsOf(pgQuery(c!), tenantId, [table], to.placement === "POOLED"));
  });
  return out;
}

/**
 * Step 3: every table copied with COPY from the snapshot `snapshot` of the
 * source, several at once (src/db/placement-copy.ts). Into a SCHEMA or
 * DATABASE target the rows go straight in; its tenants row, copied as it
 * is, names the SOURCE until the switch, so a request a stale directory
 * entry routes to the target (one naming it from an earlier stay of the
 * tenant there) is refused by the route check, reads and writes alike:
 * nothing is acknowledged in a copy that may still be dropped, nothing
 * races the verification. The switch names the target (step 5). Into the
 * main database (to POOLED) they go to the move's staging schema, and the
 * switch moves them into the shared tables. Answers the rows copied.
 */
async function copyTenant(admin: PlacementAdmin, tenantId: string, from: PlacementRef, to: PlacementRef, staging: string | null, snapshot: string, workers: number): Promise<number> {
  const targetSchema = to.placement === "SCHEMA" ? to.name : null;
  const rows = await copyInParallel({
    tenantId,
    tables: tablesOf(to),
    workers,
    source: () => openRead(admin, from, tenantId, snapshot),
    target: async () => {
      const c = await connect(admin, to);
      await beginCopy(c, tenantId, targetSchema).catch(async (err: unknown) => {
        await release(c);
        throw err;
      });
      return c;
    },
    into: (t) => (staging ? { name: `"${staging}"."${t}"`, keep: false } : { name: `"${t}"`, keep: t === "users" }),
  });
  if (!staging) {
    const target = await connect(admin, to);
    try {
      await beginCopy(target, tenantId, targetSchema);
      // The analytics counters: recounted from the copy (never copied; the copy fires no trigger).
      await recountStats(pgQuery(target), tenantId);
      await target.query("COMMIT");
    } finally {
      await release(target);
    }
  }
  return rows;
}

/**
 * Step 4: per table, the copy's prints must be the source's as it is now
 * (the API request counters: as the snapshot has them, they are counted
 * outside the fence). A table that differs is looked at in the snapshot: if
 * the source changed since (a write past the fence), the move is abandoned;
 * else the copy is wrong: MoveVerificationFailed. Either way it rolls back.
 */
async function compareCopy(snap: pg.Client, tenantId: string, to: PlacementRef, source: Record<string, string>, copy: Record<string, string>): Promise<void> {
  const differ = Object.keys(source).filter((t) => source[t] !== copy[t]);
  if (differ.length === 0) return;
  const then = await printsOf(pgQuery(snap), tenantId, differ as TenantTable[], to.placement === "POOLED");
  const changed = differ.filter((t) => then[t] !== source[t]);
  if (changed.length) throw new MoveAbandoned(`the tenant's ${changed.join(", ")} changed during the copy (a write past the fence)`);
  throw new MoveVerificationFailed(tenantId, to, differ);
}

/**
 * Step 5, on the main database's fence connection (a fence lost before the
 * COMMIT fails it): the directory row names the target; to POOLED the staged
 * rows replace the main database's rows of the tenant and are verified;
 * leaving POOLED the tenant's data rows leave the shared tables; a SCHEMA
 * source's tenants row names the target too, and so does a SCHEMA
 * target's (it named the source until now).
 */
async function switchOn(
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

/** A move's journal row (main database, owner only), written under the move lock before the move touches anything; answers its id. */
async function journalStart(main: pg.Client, tenantId: string, from: PlacementRef, to: PlacementRef): Promise<string> {
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
async function settleLocked(admin: PlacementAdmin, main: pg.Client, tenantId: string): Promise<string[]> {
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

/**
 * The sweep of unfinished moves (server start-up and every few minutes,
 * src/server.ts): every tenant with journal rows whose move lock is free (a
 * move under way is left alone) is settled as above. Answers how many
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

/** Another move of the tenant holds its move lock: this one did nothing (moveTenant answers TENANT_MOVING). */
export class MoveInProgress extends Error {
  constructor(tenantId: string) {
    super(`another move of the tenant ${tenantId} is under way`);
  }
}

/** The copy differs from the snapshot it was made from: the move was rolled back. */
export class MoveVerificationFailed extends Error {
  constructor(
    tenantId: string,
    to: PlacementRef,
    readonly tables: string[],
  ) {
    super(`move of ${tenantId} to ${placementKey(to)}: ${tables.join(", ")} differ after the copy; rolled back`);
  }
}

/**
 * The move was given up before the switch because the tenant could have
 * changed under it (its write fence lost, a write past the fence): the
 * target was discarded, the tenant is where it was, with every row, and the
 * move may simply be repeated (moveTenant answers TENANT_MOVING).
 */
export class MoveAbandoned extends Error {
  constructor(reason: string) {
    super(`${reason}; the move was abandoned, the tenant is where it was`);
  }
}

/** A POOLED tenant into a new SCHEMA or DATABASE placement (the test helper's spread; same path as a live move). */
export async function relocatePooledTenant(admin: PlacementAdmin, tenantId: string, to: PlacementRef): Promise<Move> {
  if (to.placement === "POOLED") throw new Error("relocation goes to a SCHEMA or DATABASE placement");
  return moveTenantRows(admin, tenantId, POOLED, to);
}
