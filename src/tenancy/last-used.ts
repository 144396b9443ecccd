import { assertPlacementOf, type PlacementRef } from "../db/placement-admin.ts";
import { moveFenceSql } from "../db/placement-fence.ts";
import { ROUTE_SQL, routeOf } from "../db/placement-route.ts";
import type { PlacementPools } from "../db/placement-pools.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";
import { InFlight } from "../infra/in-flight.ts";

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

/** The last uses of one app's keys (createApp): what it wrote when, and the writes under way. */
export class ApiKeyUse {
  private readonly lastFlush = new Map<string, number>();

  constructor(
    private readonly platform: PrismaClient,
    /** The app's fire-and-forget writes: a graceful shutdown waits for them before the pools close. */
    private readonly writes: InFlight = new InFlight(),
  ) {}

  /**
   * Notes one use of `key` at `now` (the app's clock). Returns the write when
   * one was started (the request does not wait for it; a test can),
   * undefined when the key's timestamp was written less than a minute before
   * `now`.
   */
  note(key: { id: string; tenantId: string }, now: number, placed?: { pools: PlacementPools | undefined; ref: PlacementRef }): Promise<void> | undefined {
    const last = this.lastFlush.get(key.id);
    if (last !== undefined && now - last < LAST_USED_FLUSH_MS) return undefined;
    if (this.lastFlush.size >= MAX_TRACKED) this.lastFlush.clear();
    this.lastFlush.set(key.id, now);
    return this.writes.track(
      Promise.resolve()
        .then(() => (placed && placed.ref.placement !== "POOLED" ? writeInPlacement(placed.pools, placed.ref, key, now) : writeInMain(this.platform, key, now)))
        .then(
          // Not written (the tenant is moving, or moved, or the key is gone): the next use tries again.
          (n) => void (n === 0 && this.lastFlush.delete(key.id)),
          () => void this.lastFlush.delete(key.id),
        ),
    );
  }
}

/**
 * The key is still valid at the use's time: a use noted from the directory's
 * cached answer, of a key revoked or expired since, is refused by PostgreSQL
 * and is not a use. The revoked/expired half of app_api_key_grant's rule
 * (migration 20261202008000), written again here: that function needs the
 * secret's hash, which a use does not carry, and reads `api_keys` through
 * the search_path, which the platform client does not set to a SCHEMA
 * placement's schema.
 */
const STILL_VALID = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)";

const writeInMain = (platform: PrismaClient, key: { id: string; tenantId: string }, now: number) =>
  platform.$executeRawUnsafe(
    `UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1::uuid AND id = $2::uuid AND ${STILL_VALID} AND pg_try_advisory_xact_lock_shared(${moveFenceSql("$4::text")})`,
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
    `UPDATE ${schema}api_keys SET last_used_at = $3 WHERE tenant_id = $1::uuid AND id = $2::uuid AND ${STILL_VALID}
       AND (SELECT ${ROUTE_SQL} FROM ${schema}tenants WHERE id = $1::uuid) = $5
       AND pg_try_advisory_xact_lock_shared(${moveFenceSql("$4::text")})`,
    key.tenantId,
    key.id,
    new Date(now),
    key.tenantId,
    routeOf(ref),
  );
}
