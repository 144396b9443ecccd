import { createHash } from "node:crypto";
import type { Cache } from "@envelop/response-cache";
import type { ExecutionResult } from "graphql";
import type { Plan } from "../generated/prisma/enums.ts";
import type { InFlight } from "./in-flight.ts";
import type { Logger } from "./logger.ts";
import { isStoreUnavailable, tenantKey, type Store } from "./store.ts";

/**
 * The response cache's storage (docs/response-cache.md): query results of a
 * tenant under `t:{<tenantId>}:rc:<sha256>` in the shared store, behind the
 * `Cache` interface of @envelop/response-cache. The plugin decides what to
 * cache and for how long (src/http/use-response-cache.ts); this file keeps the
 * entries, the per-tenant hit/miss counts and the tenant-wide clear.
 *
 * Invalidation is not the plugin's (it invalidates by the entities a
 * mutation returns, in the process that ran it): the key holds the tenant's
 * generation, which PostgreSQL bumps in the transaction of every change
 * (migration 20261202001000_response_cache). `invalidate` is therefore a
 * no-op, and an entry of an older generation is never read again.
 */

export interface ResponseCacheOptions {
  /** TTL per plan, seconds (CACHE_TTL_FREE/PRO/ENTERPRISE); 0 = until invalidated. */
  ttlSeconds: Record<Plan, number>;
  /** Entries "until invalidated" still leave the store after this long (old generations are never read). @default 86400 */
  maxTtlSeconds?: number;
}

export const DEFAULT_CACHE_TTL_SECONDS: Record<Plan, number> = { FREE: 300, PRO: 3600, ENTERPRISE: 0 };
export const MAX_TTL_SECONDS = 86_400;

/** HIT: served from the cache; MISS: executed and (if cacheable) stored; BYPASS: the cache was not used. */
export type CacheOutcome = "HIT" | "MISS" | "BYPASS";

/** The pattern of every cached response of a tenant (not its hit/miss counts). */
export const responseCachePattern = (tenantId: string) => tenantKey(tenantId, "rc", "*");

/** The key of one response: the tenant's namespace, then a digest of everything the answer depends on. */
export function responseCacheKey(tenantId: string, parts: readonly string[]): string {
  const digest = createHash("sha256");
  for (const p of parts) digest.update(p).update("\u0000");
  return tenantKey(tenantId, "rc", digest.digest("hex"));
}

const DAY_MS = 86_400_000;
/** Counts kept per UTC day, for two days. */
const statsKey = (tenantId: string, kind: "h" | "m", day: number) => tenantKey(tenantId, "rcs", String(day), kind);

/** Counts one lookup of a tenant's cache in the UTC day of `now` (the app's clock; fire-and-forget: a store that cannot answer loses the count). */
export function countLookup(store: Store, tenantId: string, hit: boolean, now: number): Promise<void> {
  return store.hit(statsKey(tenantId, hit ? "h" : "m", Math.floor(now / DAY_MS)), 2 * DAY_MS).then(
    () => undefined,
    () => undefined,
  );
}

/**
 * The tenant's hit rate over the UTC day of `now` (the app's clock) and the previous one (hits /
 * (hits + misses)); null when it had no cacheable reads then, or the store
 * cannot answer.
 */
export async function cacheHitRate(store: Pick<Store, "get">, tenantId: string, now: number): Promise<number | null> {
  const today = Math.floor(now / DAY_MS);
  try {
    const counts = await Promise.all(
      [today - 1, today].flatMap((d) => [store.get(statsKey(tenantId, "h", d)), store.get(statsKey(tenantId, "m", d))]),
    );
    const [h1, m1, h2, m2] = counts.map((c) => Number(c ?? 0));
    const hits = h1! + h2!;
    const reads = hits + m1! + m2!;
    return reads === 0 ? null : hits / reads;
  } catch (err) {
    if (isStoreUnavailable(err)) return null;
    throw err;
  }
}

/** Deletes every cached response of a tenant (the generation bump has already made them unreachable). */
export async function clearResponseCache(store: Pick<Store, "deletePattern">, tenantId: string, logger?: Pick<Logger, "warn">): Promise<number> {
  try {
    return await store.deletePattern(responseCachePattern(tenantId));
  } catch (err) {
    if (!isStoreUnavailable(err)) throw err;
    // Unreachable anyway (the generation changed); their TTL removes them.
    logger?.warn({ tenantId }, "response cache: entries not deleted, the store is unavailable");
    return 0;
  }
}

/** What one request's cache saw, for X-Cache and the counters. */
export interface LookupObserver {
  (outcome: CacheOutcome): void;
}

/**
 * The `Cache` of one request (the plugin asks for it per context): reads and
 * writes the shared store, reports HIT / MISS, and BYPASS when the store
 * cannot answer, in which case nothing is written either. Never serves from
 * process memory (a memory store is only used when REDIS_URL is unset, one
 * process).
 */
export class RequestResponseCache implements Cache {
  private bypassed = false;

  constructor(
    private readonly store: Store,
    /** The app's fire-and-forget writes (a test waits there for a stored entry before reading it again). */
    private readonly writes: InFlight,
    private readonly observe: LookupObserver,
    private readonly maxTtlSeconds = MAX_TTL_SECONDS,
  ) {}

  async get(key: string): Promise<ExecutionResult | null> {
    let raw: string | null;
    try {
      raw = await this.store.get(key);
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      this.bypassed = true;
      this.observe("BYPASS");
      return null;
    }
    const cached = raw === null ? null : entryOf(raw);
    this.observe(cached ? "HIT" : "MISS");
    return cached;
  }

  set(key: string, result: ExecutionResult, _entities: unknown, ttlMs: number): void {
    if (this.bypassed || !(ttlMs > 0)) return;
    const seconds = Number.isFinite(ttlMs) ? Math.max(1, Math.min(this.maxTtlSeconds, Math.ceil(ttlMs / 1000))) : this.maxTtlSeconds;
    const text = JSON.stringify({ data: result.data });
    // The response is this very text: serialized once, for the store and the client.
    if (!result.errors && !result.extensions) useAsBody(result, text);
    // Not waited for: the response does not depend on it.
    void this.writes.track(this.store.set(key, text, seconds).catch(() => undefined));
  }

  /** Nothing to do: the tenant's generation changes with every committed change (see above). */
  invalidate(): void {}
}

/** Makes `text` the serialization of `result` (Yoga uses a result's own `stringify`), unless it gains errors or extensions. */
function useAsBody(result: ExecutionResult, text: string): void {
  Object.defineProperty(result, "stringify", {
    value: (r: ExecutionResult) => (r === result && !r.errors && !r.extensions ? text : JSON.stringify(r)),
    enumerable: false,
    configurable: true,
    writable: true,
  });
}

/**
 * A stored entry as a result: the stored text is exactly the response body
 * Yoga would write for `{ data }`, so the result carries it as its
 * `stringify` (Yoga's serializer uses a result's own, as for graphql-jit's)
 * and `data` is only parsed if something reads it. A result that gained
 * errors or extensions on the way is serialized as usual.
 */
function entryOf(raw: string): ExecutionResult | null {
  if (!raw.startsWith('{"data":{') || !raw.endsWith("}")) return null;
  let data: Record<string, unknown> | undefined;
  const result = {
    get data() {
      return (data ??= (JSON.parse(raw) as { data: Record<string, unknown> }).data);
    },
    stringify: (r: ExecutionResult) => (r === result || (!r.errors && !r.extensions) ? raw : JSON.stringify(r)),
  };
  return result;
}
