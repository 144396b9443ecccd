import type { PrismaClient } from "../generated/prisma/client.ts";

/**
 * `ApiKey.lastUsedAt` without a write per request: each process writes a
 * key's timestamp at most once a minute, fire-and-forget on the platform
 * path (the tenant is known, but the request's own transaction must not wait
 * for it). The value is therefore exact to the minute per replica.
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
  const write: Promise<void> = platform.apiKey
    .updateMany({ where: { tenantId: key.tenantId, id: key.id }, data: { lastUsedAt: new Date(now) } })
    .then(
      () => undefined,
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
