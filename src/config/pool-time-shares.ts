import { ConfigError, int, perPlan, str, type Env } from "./env.ts";

/**
 * Each plan's share of database time per process (src/db/time-share.ts):
 * connection-seconds per second its tier pool may hold on average, or null
 * for no bound. POOL_TIME_SHARE_FREE, _PRO, _ENTERPRISE: a decimal number
 * above 0 (0.5: half a connection busy on average), or `unbounded`.
 */
export interface PoolTimeShares {
  FREE: number | null;
  PRO: number | null;
  ENTERPRISE: number | null;
  /** POOL_TIME_SHARE_WINDOW_MS: the bucket holds share x window, what an idle tier may spend at once. */
  windowMs: number;
}

/**
 * No bound by default: a plan's pool size is its only limit. A share is a
 * trade an operator opts into: FREE at 0.5 keeps a FREE tenant's slow
 * queries from taking more than about half of one core of PostgreSQL per
 * process (the neighbour bench: docs/placement.md, "Time shares, measured"),
 * but it is a bound on the whole FREE tier of the process, so under a load
 * where FREE requests hold connections for long (a busy event loop) every
 * FREE tenant's requests queue behind it: the dashboard bench with a third of
 * its tenants on FREE fell from 127 to 78 req/s, p95 1.3 s (run 1 of
 * bench/results/2026-12-03T09-24 quiet run, killed).
 */
export const DEFAULT_POOL_TIME_SHARES: PoolTimeShares = { FREE: null, PRO: null, ENTERPRISE: null, windowMs: 1000 };

function share(env: Env, name: string, fallback: number | null): number | null {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  if (raw.toLowerCase() === "unbounded") return null;
  if (!/^\d+(\.\d+)?$/.test(raw)) throw new ConfigError(name, `expected connection-seconds per second (e.g. 0.5) or "unbounded", got "${raw}"`);
  const n = Number(raw);
  if (!(n > 0) || n > 500) throw new ConfigError(name, `expected more than 0 and at most 500, got ${raw}`);
  return n;
}

export function poolTimeShares(env: Env): PoolTimeShares {
  const d = DEFAULT_POOL_TIME_SHARES;
  return {
    ...perPlan("POOL_TIME_SHARE", (name, plan) => share(env, name, d[plan])),
    windowMs: int(env, "POOL_TIME_SHARE_WINDOW_MS", d.windowMs, 10, 60_000),
  };
}
