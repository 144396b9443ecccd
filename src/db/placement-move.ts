import pg from "pg";
import type { Placement } from "../generated/prisma/enums.ts";
import { placementKey, placementOf, POOLED, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";
import { placementSyncLockSql } from "./placement-sync.ts";
import { beginCopy, pgQuery, readRows, recountStats, TENANT_TABLES, tenantRowsWhere, writeRows, type Query, type TenantTable } from "./placement-rows.ts";

/**
 * Moving a tenant between placements, live (docs/placement.md, "Moving a
 * tenant"):
 *   1. fence: an exclusive advisory lock on the tenant's move key in the
 *      source database. Every mutation's opening message takes the same key
 *      shared with a *try* (src/tenancy/tenant-db.ts): while the mover waits
 *      for the writes in flight or holds the key, new writes are refused
 *      with TENANT_MOVING (retryable); reads never take it and continue;
 *   2. the target placement is created and migrated (to SCHEMA/DATABASE;
 *      before the fence, in fact: migrations do not need the writes stopped);
 *   3. every row of the tenant is copied from one REPEATABLE READ snapshot of
 *      the source in one transaction of the target, and the target's tenants
 *      row names the target (the route PostgreSQL confirms to every request);
 *   4. per table, the count and a checksum of the copy are compared with the
 *      snapshot's in that transaction; any difference (or error) rolls the
 *      copy back, drops a placement made by the move, and leaves the tenant
 *      where it was;
 *   5. the directory row switches (to POOLED: in the copy's own transaction,
 *      the main database being the target; else one transaction of the main
 *      database that also removes the tenant's data rows from the shared
 *      tables when it leaves POOLED);
 *   6. a placed source's tenants row is made to name the new placement (a
 *      request a stale directory cache still routes there is refused as
 *      TENANT_MOVING and evicts its cache entry), the fence is released and
 *      the old placement dropped.
 * The caller evicts the directory's cache entries of the tenant.
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

/** Per table, the tenant's row count and a checksum, as far as a move must keep them equal. */
async function movePrints(source: Query, tenantId: string, toPooled: boolean): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const table of TENANT_TABLES) {
    if (toPooled && table === "usage_counters") continue;
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

async function release(client: pg.Client) {
  await client.end().catch(() => {});
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
  // never drop a placement this one made. A session lock: a mover that dies
  // releases it.
  const mover = await connect(admin, POOLED);
  try {
    const [lock] = (await mover.query<{ held: boolean }>(`SELECT pg_try_advisory_lock(${moveLockSql("$1::text")}) AS held`, [tenantId])).rows;
    if (!lock?.held) throw new MoveInProgress(tenantId);
    return await moveLocked(admin, tenantId, from, to, now, started, options);
  } finally {
    // Ending the session releases the lock.
    await release(mover);
  }
}

async function moveLocked(admin: PlacementAdmin, tenantId: string, from: PlacementRef, to: PlacementRef, now: () => number, started: number, options: MoveOptions): Promise<Move> {
  // The target is created and migrated before the fence: writes are refused for the copy alone.
  // Dropped on failure only once this move's CREATE succeeded: a placement it did not make is never dropped.
  let made = false;
  if (to.placement !== "POOLED") {
    if (await admin.exists(to)) throw new Error(`the placement ${placementKey(to)} exists already`);
    try {
      await admin.create(to);
    } catch (err) {
      // Created but not migrated: still this move's (a CREATE that failed as "exists already" raced another creator: not ours).
      if (!isAlreadyExists(err)) await admin.drop(to).catch(() => {});
      throw err;
    }
    made = true;
  }
  // The fence is in the source database (the tenant's mutations take it
  // there) and in the main one (platform changes of the tenant take it
  // there: src/modules/platform/placement.service.ts refuseWhileMoving).
  const fences: pg.Client[] = [];
  try {
    for (const ref of from.placement === "DATABASE" ? [from, POOLED] : [from]) fences.push(await connect(admin, ref));
  } catch (err) {
    for (const f of fences) await release(f);
    if (made) await admin.drop(to).catch(() => {});
    throw err;
  }
  let fenced = false;
  let writesRefusedMs = 0;
  const unfence = async () => {
    if (!fenced) return;
    fenced = false;
    for (const fence of fences) await fence.query(`SELECT pg_advisory_unlock(${moveFenceSql("$1::text")})`, [tenantId]);
    writesRefusedMs = now() - fencedAt;
  };
  let fencedAt = now();
  let marked = false;
  let copied: { rows: number; tables: Record<string, string> } = { rows: 0, tables: {} };
  /** The switch's COMMIT was sent: whether it committed, only the directory row can tell. */
  let switching = false;
  try {
    fencedAt = now();
    for (const fence of fences) {
      await fence.query(`SET lock_timeout = ${Math.max(1, Math.trunc(options.fenceTimeoutMs ?? 10_000))}`);
      fenced = true;
      await fence.query(`SELECT pg_advisory_lock(${moveFenceSql("$1::text")})`, [tenantId]);
      await fence.query("RESET lock_timeout");
    }
    // A move that ran while this one waited has changed the placement: nothing is copied from a stale source.
    const main = await connect(admin, POOLED);
    try {
      const [row] = (await main.query<{ route: string }>(`SELECT ${ROUTE_SQL} AS route FROM tenants WHERE id = $1`, [tenantId])).rows;
      if (row?.route !== routeOf(from)) throw new Error("the tenant's placement changed before the move began");
    } finally {
      await release(main);
    }
    // The old copy's tenants row names the target BEFORE the switch, inside
    // the fence: a request a stale directory entry routes there is refused
    // (its facts' route differs) from then on, and a mover that dies between
    // here and the switch leaves the tenant refused (fails closed), never
    // served by two copies. Undone if the move fails before the switch.
    const markOld = async () => {
      // Still fenced, and nothing of the tenant changed since the snapshot: else the move is abandoned (the target dropped, the tenant stays).
      await checkFences(fences);
      await checkUnchanged(admin, tenantId, from, to, copied.tables);
      if (from.placement === "POOLED") return;
      marked = true;
      await nameIn(admin, tenantId, from, to);
    };
    copied = await copyAndVerify(admin, tenantId, from, to, async (verified) => {
      copied = verified;
      await markOld();
      switching = true;
    });
    if (to.placement !== "POOLED") {
      await markOld();
      switching = true;
      await switchToPlacement(admin, tenantId, from, to);
    }
  } catch (err) {
    // A switch whose COMMIT went out before the connection broke may have
    // committed: the directory row decides. Naming the target, the move
    // holds (finished below); unknown (the main database unreachable), the
    // old copy stays marked and the target stays: refused, never two copies.
    const switched = !switching ? false : await directoryNames(admin, tenantId, to).catch(() => undefined);
    if (switched !== true) {
      if (switched === false) await nameIn(admin, tenantId, from, from).catch(() => {});
      if (fenced) await unfence().catch(() => {});
      for (const f of fences) await release(f);
      if (made && switched === false) await admin.drop(to).catch(() => {});
      throw err;
    }
  }
  // Switched: the directory names the target, nothing drops it, and nothing
  // from here on fails the move (the caller must still evict the directory
  // cache and audit it); what could not be finished is reported.
  const leftovers: string[] = [];
  await unfence().catch((err: unknown) => leftovers.push(`the fence was not released (${String(err)}); its connection's end releases it`));
  for (const f of fences) await release(f);
  // Requests that were reading the old copy may hold its tables: DROP then
  // waits for them, or deadlocks with one and is tried again.
  if (from.placement !== "POOLED") {
    await persist(() => admin.drop(from)).catch((err: unknown) => leftovers.push(`the old placement ${placementKey(from)} was not dropped (${String(err)})`));
  }
  return { from, to, rows: copied.rows, tables: copied.tables, durationMs: now() - started, writesRefusedMs, leftovers };
}

/**
 * The fence is a session lock: it holds as long as its backend does. A query
 * on each fence connection answered by the backend that took the lock proves
 * it was held throughout (a terminated backend, a reset connection: the lock
 * is gone, writes may have committed after the snapshot).
 */
async function checkFences(fences: pg.Client[]): Promise<void> {
  for (const fence of fences) {
    const pid = await fence.query<{ pid: number }>("SELECT pg_backend_pid() AS pid").then((r) => r.rows[0]?.pid, () => undefined);
    if (pid === undefined || pid !== (fence as unknown as { processID: number }).processID) throw new Error("the move's write fence was lost; the move was abandoned");
  }
}

/** The source read afresh has the snapshot's prints: no write of the tenant slipped past the fence. */
async function checkUnchanged(admin: PlacementAdmin, tenantId: string, from: PlacementRef, to: PlacementRef, expected: Record<string, string>): Promise<void> {
  const source = await connect(admin, from);
  try {
    await source.query(`BEGIN READ ONLY${from.placement === "SCHEMA" ? `; SET LOCAL search_path TO "${from.name}"` : ""}`);
    const now = await movePrints(pgQuery(source), tenantId, to.placement === "POOLED");
    // The API request counters are counted in the main database for every tenant, outside the fence (a snapshot of them is copied).
    const differ = Object.keys(expected).filter((t) => t !== "usage_counters" && expected[t] !== now[t]);
    if (differ.length) throw new MoveVerificationFailed(tenantId, to, differ);
    await source.query("COMMIT");
  } finally {
    await release(source);
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

/** A copy's tenants row made to name `names` (the placement the tenant's requests must be routed to). */
async function nameIn(admin: PlacementAdmin, tenantId: string, copy: PlacementRef, names: PlacementRef): Promise<void> {
  await persist(async () => {
    const c = await connect(admin, copy);
    try {
      await beginCopy(c, tenantId, copy.placement === "SCHEMA" ? copy.name : null);
      await c.query(`UPDATE tenants SET placement = $2, placement_server = $3, placement_name = $4 WHERE id = $1`, [tenantId, names.placement, names.server, names.name]);
      await c.query("COMMIT");
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

/** Steps 3 and 4: the copy, verified in its own transaction (to POOLED: the directory switches with it). */
async function copyAndVerify(admin: PlacementAdmin, tenantId: string, from: PlacementRef, to: PlacementRef, beforeSwitch: (copied: { rows: number; tables: Record<string, string> }) => Promise<void>) {
  const toPooled = to.placement === "POOLED";
  const source = await connect(admin, from);
  try {
    await source.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY${from.placement === "SCHEMA" ? `; SET LOCAL search_path TO "${from.name}"` : ""}`);
    const target = await connect(admin, to);
    try {
      await beginCopy(target, tenantId, to.placement === "SCHEMA" ? to.name : null);
      const into = pgQuery(target);
      const out = pgQuery(source);
      if (toPooled) {
        await target.query(`SELECT pg_advisory_xact_lock(${placementSyncLockSql("$1::text")})`, [tenantId]);
        for (const table of REPLACED_IN_MAIN) await target.query(`DELETE FROM "${table}" x WHERE ${tenantRowsWhere(table)}`, [tenantId]);
        await target.query(`DELETE FROM audit_log WHERE tenant_id = $1 AND NOT cross_tenant`, [tenantId]);
      }
      let rows = 0;
      for (const table of TENANT_TABLES) {
        if (toPooled && table === "usage_counters") continue;
        const keep = table === "users" || (toPooled && table === "audit_log");
        const found = await readRows(out, table, tenantId);
        // The main database's tenants row is the directory entry (other rows refer to it): updated in place.
        if (toPooled && table === "tenants") rows += await overwriteTenantRow(target, found);
        else rows += await writeRows(into, table as TenantTable, found, keep);
      }
      await target.query(`UPDATE tenants SET placement = $2, placement_server = $3, placement_name = $4 WHERE id = $1`, [tenantId, to.placement, to.server, to.name]);
      // The analytics counters: recounted from the copy (never copied; the copy fires no trigger).
      await recountStats(into, tenantId);
      const expected = await movePrints(out, tenantId, toPooled);
      const copied = await movePrints(into, tenantId, toPooled);
      const differ = Object.keys(expected).filter((t) => expected[t] !== copied[t]);
      if (differ.length) throw new MoveVerificationFailed(tenantId, to, differ);
      // To POOLED this COMMIT is the switch.
      if (toPooled) await beforeSwitch({ rows, tables: expected });
      await target.query("COMMIT");
      await release(target);
      await source.query("COMMIT");
      await release(source);
      return { rows, tables: expected };
    } catch (err) {
      await release(target);
      throw err;
    }
  } catch (err) {
    await release(source);
    throw err;
  }
}

/** The main database's tenants row takes every column of the placement's copy. */
async function overwriteTenantRow(main: pg.Client, rows: unknown[]): Promise<number> {
  const columns = (await main.query<{ c: string }>(`SELECT column_name AS c FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'tenants' AND column_name <> 'id'`)).rows.map((r) => `"${r.c}"`);
  const set = columns.map((c) => `${c} = r.${c}`).join(", ");
  const res = await main.query(`UPDATE tenants SET ${set} FROM jsonb_populate_record(NULL::tenants, $1::jsonb) r WHERE tenants.id = r.id`, [JSON.stringify(rows[0])]);
  if (res.rowCount !== 1) throw new Error("the directory row of the tenant is missing");
  return 1;
}

/** Step 5 into a SCHEMA/DATABASE placement: the directory row names it; a POOLED tenant's data rows leave the shared tables. */
async function switchToPlacement(admin: PlacementAdmin, tenantId: string, from: PlacementRef, to: PlacementRef) {
  const main = await connect(admin, POOLED);
  try {
    await beginCopy(main, tenantId, null);
    // After the directory syncs of the source in flight (src/db/placement-sync.ts): one that follows sees the switch and does nothing.
    await main.query(`SELECT pg_advisory_xact_lock(${placementSyncLockSql("$1::text")})`, [tenantId]);
    await main.query(`UPDATE tenants SET placement = $2, placement_server = $3, placement_name = $4 WHERE id = $1`, [tenantId, to.placement, to.server, to.name]);
    if (from.placement === "POOLED") {
      for (const table of DATA_TABLES) await main.query(`DELETE FROM "${table}" WHERE tenant_id = $1`, [tenantId]);
      await main.query(`DELETE FROM audit_log WHERE tenant_id = $1 AND NOT cross_tenant`, [tenantId]);
      // Its main-database counters keep the directory's (members, API requests) only.
      await recountStats(pgQuery(main), tenantId);
    }
    await main.query("COMMIT");
    await release(main);
  } catch (err) {
    await release(main);
    throw err;
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

/** A POOLED tenant into a new SCHEMA or DATABASE placement (the test helper's spread; same path as a live move). */
export async function relocatePooledTenant(admin: PlacementAdmin, tenantId: string, to: PlacementRef): Promise<Move> {
  if (to.placement === "POOLED") throw new Error("relocation goes to a SCHEMA or DATABASE placement");
  return moveTenantRows(admin, tenantId, POOLED, to);
}
