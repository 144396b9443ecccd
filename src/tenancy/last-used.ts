import { moveFenceSql } from "../db/placement-move.ts";
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
export function noteApiKeyUse(platform: PrismaClient, key: { id: string; tenantId: string }, now = Date.now()): Promise<void> | undefined {
  const last = lastFlush.get(key.id);
  if (last !== undefined && now - last < LAST_USED_FLUSH_MS) return undefined;
  if (lastFlush.size >= MAX_TRACKED) lastFlush.clear();
  lastFlush.set(key.id, now);
  const write: Promise<void> = platform
    .$executeRawUnsafe(
      `UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1::uuid AND id = $2::uuid AND pg_try_advisory_xact_lock_shared(${moveFenceSql("$4::text")})`,
      key.tenantId,
      key.id,
      new Date(now),
      key.tenantId,
    )
    .then(
      // Not written (the tenant is moving, or the key is gone): the next use tries again.
      (n) => void (n === 0 && lastFlush.delete(key.id)),
      () => void lastFlush.delete(key.id),
    )
    .finally(() => inFlight.delete(write));
  inFlight.add(write);
  return write;
}

/** Waits for every last-used write already started (before the pools close). */
export async function flushApiKeyUse(): Promise<void> {
  while (inFlight.size) await Promise.allSettled([...inFlight]);
}
