import { ConfigError, int, perPlan, str, type Env } from "./env.ts";

/** Connections per process: one pool per plan, and the platform and live pools (src/db/clients.ts). */
export interface PoolSizes {
  FREE: number;
  PRO: number;
  ENTERPRISE: number;
  platform: number;
  live: number;
}

/**
 * 2 + 8 + 16 + 4 + 2 = 32 connections per process at most, so two replicas
 * stay well under PostgreSQL's default max_connections (100), with room for
 * migrations, an admin and a test run (docs/performance.md, "Tier pools").
 */
export const DEFAULT_POOL_SIZES: PoolSizes = { FREE: 2, PRO: 8, ENTERPRISE: 16, platform: 4, live: 2 };

export function poolSizes(env: Env): PoolSizes {
  // The one pool of the first round, divided by plan since: a value would be ignored without notice.
  if (str(env, "DB_POOL_SIZE") !== undefined) {
    throw new ConfigError("DB_POOL_SIZE", "replaced by POOL_SIZE_FREE, POOL_SIZE_PRO, POOL_SIZE_ENTERPRISE (connections per plan) and POOL_SIZE_PLATFORM");
  }
  const d = DEFAULT_POOL_SIZES;
  return {
    ...perPlan("POOL_SIZE", (name, plan) => int(env, name, d[plan], 1, 500)),
    platform: int(env, "POOL_SIZE_PLATFORM", d.platform, 1, 500),
    live: int(env, "POOL_SIZE_LIVE", d.live, 1, 500),
  };
}
