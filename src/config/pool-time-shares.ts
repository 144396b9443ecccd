import { ConfigError, int, str, type Env } from "./env.ts";

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
 * FREE: half a connection busy on average, i.e. at most about half of one
 * core of PostgreSQL's time per process (docs/placement.md, "Pools" says
 * why and what it measured); the paid plans: no bound but their pool sizes.
 */
export const DEFAULT_POOL_TIME_SHARES: PoolTimeShares = { FREE: 0.5, PRO: null, ENTERPRISE: null, windowMs: 1000 };

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
    FREE: share(env, "POOL_TIME_SHARE_FREE", d.FREE),
    PRO: share(env, "POOL_TIME_SHARE_PRO", d.PRO),
    ENTERPRISE: share(env, "POOL_TIME_SHARE_ENTERPRISE", d.ENTERPRISE),
    windowMs: int(env, "POOL_TIME_SHARE_WINDOW_MS", d.windowMs, 10, 60_000),
  };
}
