import { rateLimited } from "../errors.ts";
import { tenantKey, type Store } from "./store.ts";

export interface RateLimitState {
  limit: number;
  remaining: number;
  /** Unix seconds. */
  reset: number;
}

const WINDOW_MS = 60_000;

/**
 * API_REQUESTS_PER_MINUTE: a fixed one-minute window per tenant, counted
 * atomically in the shared store, so the limit holds across replicas. Each
 * tenant has its own key: one tenant at its limit costs the others nothing.
 */
export async function consumeRequest(store: Store, tenantId: string, limit: number | null): Promise<RateLimitState> {
  const window = Math.floor(Date.now() / WINDOW_MS);
  const { count, resetAt } = await store.hit(tenantKey(tenantId, "rl", String(window)), WINDOW_MS);
  const reset = Math.ceil(resetAt / 1000);
  if (limit === null) return { limit: -1, remaining: -1, reset };
  const state = { limit, remaining: Math.max(0, limit - count), reset };
  if (count > limit) {
    throw Object.assign(rateLimited(limit, reset, Math.max(1, reset - Math.floor(Date.now() / 1000))), {
      rateLimit: state,
    });
  }
  return state;
}
