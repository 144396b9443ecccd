import { assertPlacementOf, type PlacementRef } from "../db/placement-admin.ts";
import { moveFenceSql, ROUTE_SQL, routeOf } from "../db/placement-move.ts";
import type { PlacementPools } from "../db/placement-pools.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";

/**
 * `ApiKey.lastUsedAt` without a write per request: each process writes a
 * key's timestamp at most once a minute, fire-and-forget on the platform
 * path (the tenant is known, but the request's own transaction must not wait
 * for it). The value is therefore exact to the minute per replica.
 *
 * The write takes the tenant's move fence shared with a try, in its own
 * statement (docs/placement.md, "Moving a tenant"): while a move holds it
 * the write is not made (a write after the move's snapshot would be lost
 * with the copy it lands in) and the next use of the key writes it.
 *
 * A placed tenant's (SCHEMA/DATABASE) last use is written in its placement,
 * where `ApiKey.lastUsedAt` is read like the rest of its rows (the directory
 * sync then copies it to the main database with the keys). The fence is
 * taken there too: it is in the move's source database (the main one for a
 * SCHEMA placement, the placement's own for a DATABASE one). The write also
 * requires the placement's tenants row to name that placement (the route a
 * request confirms): a stale directory entry after a move writes nothing
 * into the old copy, and the next use tries again.
 */
export const LAST_USED_FLUSH_MS = 60_000;
const MAX_TRACKED = 50_000;

const lastFlush = new Map<string, number>();
/** Writes not yet answered: a graceful shutdown waits for them (flushApiKeyUse). */
const inFlight = new Set<Promise<unknown>>();

/**
 * Notes one use of `key` at `now`. Returns the write when one was started
 * (the request does not wait for it; a test can), undefined when the key's
 * timestamp was written less than a minute before `now`.
 */
export function noteApiKeyUse(
  platform: PrismaClient,
  key: { id: string; tenantId: string },
  now = Date.now(),
  placed?: { pools: PlacementPools | undefined; ref: PlacementRef },
): Promise<void> | undefined {
  const last = lastFlush.get(key.id);
  if (last !== undefined && now - last < LAST_USED_FLUSH_MS) return undefined;
  if (lastFlush.size >= MAX_TRACKED) lastFlush.clear();
  lastFlush.set(key.id, now);
  const write: Promise<void> = Promise.resolve()
    .then(() => (placed && placed.ref.placement !== "POOLED" ? writeInPlacement(placed.pools, placed.ref, key, now) : writeInMain(platform, key, now)))
    .then(
      // Not written (the tenant is moving, or moved, or the key is gone): the next use tries again.
      (n) => void (n === 0 && lastFlush.delete(key.id)),
      () => void lastFlush.delete(key.id),
    )
    .finally(() => inFlight.delete(write));
  inFlight.add(write);
  return write;
}

const writeInMain = (platform: PrismaClient, key: { id: string; tenantId: string }, now: number) =>
  platform.$executeRawUnsafe(
    `UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1::uuid AND id = $2::uuid AND pg_try_advisory_xact_lock_shared(${moveFenceSql("$4::text")})`,
    key.tenantId,
    key.id,
    new Date(now),
    key.tenantId,
  );

/** In the placement, with the platform role's client there; its name is checked against the tenant's id (the route comes from the directory cache). */
function writeInPlacement(pools: PlacementPools | undefined, ref: PlacementRef, key: { id: string; tenantId: string }, now: number) {
  if (!pools) throw new Error("no placement pools: a placed tenant's last use cannot be written");
  assertPlacementOf(key.tenantId, ref);
  const schema = ref.placement === "SCHEMA" ? `"${ref.name}".` : "";
  return pools.platform(ref).$executeRawUnsafe(
    `UPDATE ${schema}api_keys SET last_used_at = $3 WHERE tenant_id = $1::uuid AND id = $2::uuid
       AND (SELECT ${ROUTE_SQL} FROM ${schema}tenants WHERE id = $1::uuid) = $5
       AND pg_try_advisory_xact_lock_shared(${moveFenceSql("$4::text")})`,
    key.tenantId,
    key.id,
    new Date(now),
    key.tenantId,
    routeOf(ref),
  );
}

/** Waits for every last-used write already started (before the pools close). */
export async function flushApiKeyUse(): Promise<void> {
  while (inFlight.size) await Promise.allSettled([...inFlight]);
}
