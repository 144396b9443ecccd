import { ConfigError, perPlan, str, type Env } from "./env.ts";

/**
 * Connections one tenant may hold at once in its plan's tier pool, per
 * process (src/db/time-share.ts, docs/request-path.md "Fairness within a
 * tier"). POOL_TENANT_MAX_FREE, _PRO, _ENTERPRISE: an integer from 1, or
 * `unbounded`; null: the pool's size.
 */
export interface PoolTenantMax {
  FREE: number | null;
  PRO: number | null;
  ENTERPRISE: number | null;
}

/**
 * No cap by default: the waiters of a tier are served round-robin by tenant
 * anyway, so a busy tenant delays another's request by one turn at most, and
 * a tenant alone on its tier may use the whole pool (what an operator of a
 * pool expects when nothing else waits). A cap is the stronger, opt-in
 * trade: a tenant's requests wait at its cap even while connections of the
 * tier are free (as PgBouncer's per-user pool_size).
 */
export const DEFAULT_POOL_TENANT_MAX: PoolTenantMax = { FREE: null, PRO: null, ENTERPRISE: null };

function cap(env: Env, name: string, fallback: number | null): number | null {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  if (raw.toLowerCase() === "unbounded") return null;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 500) throw new ConfigError(name, `expected connections from 1 to 500 or "unbounded", got "${raw}"`);
  return Number(raw);
}

export function poolTenantMax(env: Env): PoolTenantMax {
  const d = DEFAULT_POOL_TENANT_MAX;
  return perPlan("POOL_TENANT_MAX", (name, plan) => cap(env, name, d[plan]));
}
