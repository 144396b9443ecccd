import { AppError, rateLimited } from "../errors.ts";
import { isStoreUnavailable, StoreUnavailableError, tenantKey, type Store } from "./store.ts";

export interface RateLimitState {
  limit: number;
  remaining: number;
  /** Unix seconds. */
  reset: number;
  /** "local": counted by this process alone, the shared store being unavailable. */
  scope?: "shared" | "local";
}

const WINDOW_MS = 60_000;

/** The store key of a tenant's one-minute window containing `now` (ms epoch): t:{id}:rl:<minute>. */
export const rateLimitWindowKey = (tenantId: string, now: number) => tenantKey(tenantId, "rl", String(Math.floor(now / WINDOW_MS)));

/**
 * A counted read (Store.readAndHit) the caller stopped waiting for while it
 * was still on its way: what it counted (null: it did not count), or
 * "unavailable" (it failed: whether Redis ran it is unknown). Never rejects.
 */
export type LateCount = Promise<number | null | "unavailable">;

export const lateCount = (read: Promise<{ count: number | null }>): LateCount =>
  read.then(
    (r) => r.count,
    () => "unavailable" as const,
  );

/** The RATE_LIMITED error consumeRequest throws: it carries the window's state for the response headers. */
export const isRateLimited = (err: unknown): err is AppError & { rateLimit: RateLimitState } =>
  err instanceof AppError && "rateLimit" in err;

/**
 * The degraded mode of the limiter (docs/degraded-modes.md): while the shared
 * store cannot answer, each process counts the same one-minute windows in
 * memory, one entry per tenant (the current window only, so memory stays
 * bounded by the number of tenants). The limit then holds per process: with
 * N replicas a tenant may get up to N times its limit until Redis is back.
 */
class LocalWindows {
  private readonly windows = new Map<string, { window: number; count: number }>();

  hit(tenantId: string, window: number): number {
    const entry = this.windows.get(tenantId);
    if (entry && entry.window === window) return ++entry.count;
    this.windows.set(tenantId, { window, count: 1 });
    return 1;
  }
}

/**
 * API_REQUESTS_PER_MINUTE: a fixed one-minute window per tenant of the app's
 * clock, counted atomically in the shared store, so the limit holds across
 * replicas. Each tenant has its own key: one tenant at its limit costs the
 * others nothing. One per app (createApp): its in-memory fallback windows
 * are that app's own.
 */
export class RateLimiter {
  private readonly fallback = new LocalWindows();

  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The window a request of `tenantId` counts in now: the store key to hit,
   * for a caller that counts it in a store call of its own (the request
   * context reads the directory and counts in one round trip,
   * Directory.tenantAccess), then hands the count to `consume`.
   */
  window(tenantId: string): { key: string; windowMs: number; at: number } {
    const at = this.now();
    return { key: rateLimitWindowKey(tenantId, at), windowMs: WINDOW_MS, at };
  }

  /**
   * Counts one request of `tenantId`; throws RATE_LIMITED (with the window's
   * state) over `limit`. `counted`: the request was already counted in the
   * store, at `at` (see `window`): its count is taken as it is. A count still
   * on its way (LateCount: the directory's budget ran out first) is waited
   * for, up to the store's command timeout (or until the store finds Redis
   * hung and gives up on every command waiting: src/infra/store.ts), and
   * never counted a second time: when it did not count, the request is
   * counted here; when it failed or was given up on, in this process's
   * window (the store is unavailable).
   */
  async consume(tenantId: string, limit: number | null, counted?: { at: number; count: number | LateCount }): Promise<RateLimitState> {
    const now = counted?.at ?? this.now();
    const window = Math.floor(now / WINDOW_MS);
    // The window ends when the clock says so, in the store and out of it.
    const reset = ((window + 1) * WINDOW_MS) / 1000;
    let count: number;
    let scope: RateLimitState["scope"] = "shared";
    const known = await counted?.count;
    try {
      if (known === "unavailable") throw new StoreUnavailableError("the counted read failed");
      count = known ?? (await this.store.hit(rateLimitWindowKey(tenantId, now), WINDOW_MS)).count;
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      count = this.fallback.hit(tenantId, window);
      scope = "local";
    }
    if (limit === null) return { limit: -1, remaining: -1, reset, scope };
    const state = { limit, remaining: Math.max(0, limit - count), reset, scope };
    if (count > limit) {
      throw Object.assign(rateLimited(limit, reset, retryAfter(reset, now)), { rateLimit: state });
    }
    return state;
  }
}

/** Seconds from `now` (ms epoch) until a window's `reset` (unix seconds), at least 1: RATE_LIMITED's Retry-After. */
export const retryAfter = (reset: number, now: number) => Math.max(1, reset - Math.floor(now / 1000));
