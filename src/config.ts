/**
 * The only reader of process.env. Every variable of SPEC section 2 (and the
 * few this implementation adds) is parsed and validated once, at start-up; a
 * bad value stops the process with one line naming the variable.
 */

import { bool, ConfigError, int, perPlan, str, url, type Env } from "./config/env.ts";
import { corsOrigins } from "./config/cors-origins.ts";
import { placementServers } from "./config/placement-servers.ts";
import { redisKeyPrefix } from "./config/redis-key-prefix.ts";
import { poolSizes, type PoolSizes } from "./config/pool-sizes.ts";
import { poolTenantMax, type PoolTenantMax } from "./config/pool-tenant-max.ts";
import { poolTimeShares, type PoolTimeShares } from "./config/pool-time-shares.ts";
import { trustProxy, type TrustProxy } from "./config/trust-proxy.ts";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface Config {
  nodeEnv: string;
  production: boolean;
  port: number;
  /**
   * HOST: the address the server listens on. Outside production 127.0.0.1
   * (this machine only: GraphiQL's page then carries a live demo OWNER
   * token, src/http/welcome.ts); in production every interface (undefined).
   */
  host: string | undefined;
  /** Connection of the migrator / table owner. Undefined: embedded PostgreSQL. */
  databaseUrl: string | undefined;
  /** Optional separate login for the tenant-scoped role (managed databases). */
  appDatabaseUrl: string | undefined;
  /** Optional separate login for the platform (cross-tenant) role. */
  platformDatabaseUrl: string | undefined;
  /** PostgreSQL connections per process: per plan (POOL_SIZE_FREE, _PRO, _ENTERPRISE), platform and live (POOL_SIZE_PLATFORM, _LIVE). */
  poolSizes: PoolSizes;
  /** Each plan's share of database time, connection-seconds per second (POOL_TIME_SHARE_FREE, _PRO, _ENTERPRISE; docs/request-path.md "Time shares"). */
  poolTimeShares: PoolTimeShares;
  /** Connections one tenant may hold at once in its plan's pool (POOL_TENANT_MAX_FREE, _PRO, _ENTERPRISE; docs/request-path.md "Fairness within a tier"). */
  poolTenantMax: PoolTenantMax;
  /** DATABASE_PREPARED_STATEMENTS: the request path's planned statements prepared per connection (default on; off behind PgBouncer before 1.21 in transaction mode; docs/request-path.md "Prepared statements"). */
  preparedStatements: boolean;
  /** PLACEMENT_DATABASE_URLS: servers that can host DATABASE placements, by name (the main server is `default`). */
  placementServers: Record<string, string>;
  /** PLACEMENT_POOL_IDLE_MS: a placement's pools unused this long are dropped, reopened on next use (0: never; docs/placement.md "Pools"). */
  placementPoolIdleMs: number;
  embeddedPgPort: number;
  embeddedPgDataDir: string;
  /** One Redis server (REDIS_URL); exclusive with redisClusterNodes. */
  redisUrl: string | undefined;
  /** A Redis Cluster (REDIS_CLUSTER_NODES=host:port,...): the seed nodes; ioredis discovers the rest. */
  redisClusterNodes: RedisClusterNode[] | undefined;
  /** REDIS_KEY_PREFIX: every Redis key and channel of this deployment under it ("" for none; src/infra/redis.ts). */
  redisKeyPrefix: string;
  jwtSecret: string;
  jwtIssuer: string | undefined;
  jwtAudience: string | undefined;
  jwksUrl: string | undefined;
  baseDomain: string | undefined;
  platformAdminSubjects: string[];
  graphiql: boolean;
  introspection: boolean;
  /** SQL_PLANS: queries of declared fields answered by one statement built in PostgreSQL (docs/sql-plans.md); off: every query executed field by field. */
  sqlPlans: boolean;
  logLevel: LogLevel;
  metricsToken: string | undefined;
  migrateOnStart: boolean;
  seedOnStart: boolean;
  maxBodyBytes: number;
  /** Which proxies' X-Forwarded-For to believe (TRUST_PROXY); default: none, the socket address is the client. */
  trustProxy: TrustProxy;
  /** Origins allowed to call cross-origin (CORS_ORIGINS); empty: none. `*` allows any origin without credentials. */
  corsOrigins: string[];
  /** How long in-flight requests may finish after SIGTERM/SIGINT (SPEC section 10). */
  shutdownDrainMs: number;
  /** Response cache TTL per plan, seconds; 0 = until invalidated (CACHE_TTL_FREE/PRO/ENTERPRISE, SPEC section 10). */
  cacheTtlSeconds: { FREE: number; PRO: number; ENTERPRISE: number };
  /** How often tenant storage is measured in the background (STORAGE_REFRESH_SECONDS; docs/tenant-config.md). */
  storageRefreshMs: number;
}

export const DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef";


/** A seed node of a Redis Cluster; credentials and TLS come from `redis[s]://user:pass@` entries. */
export interface RedisClusterNode {
  host: string;
  port: number;
  username?: string;
  password?: string;
  tls?: boolean;
}

/** Where the shared store lives: a Redis URL, or the seed nodes of a Redis Cluster. */
export type RedisTarget = string | readonly RedisClusterNode[];

/** REDIS_CLUSTER_NODES: `host:port` or `redis[s]://[user:pass@]host:port`, comma-separated. */
function redisClusterNodes(env: Env): RedisClusterNode[] | undefined {
  const raw = str(env, "REDIS_CLUSTER_NODES");
  if (raw === undefined) return undefined;
  const nodes = raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      let u: URL;
      try {
        u = new URL(/^[a-z]+:\/\//i.test(entry) ? entry : `redis://${entry}`);
      } catch {
        throw new ConfigError("REDIS_CLUSTER_NODES", `not host:port: "${entry}"`);
      }
      if (!["redis:", "rediss:"].includes(u.protocol)) throw new ConfigError("REDIS_CLUSTER_NODES", `expected host:port or a redis: URL, got ${u.protocol}`);
      const port = Number(u.port || 6379);
      if (!u.hostname || !Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError("REDIS_CLUSTER_NODES", `not host:port: "${entry}"`);
      const node: RedisClusterNode = { host: u.hostname.replace(/^\[|\]$/g, ""), port };
      if (u.username) node.username = decodeURIComponent(u.username);
      if (u.password) node.password = decodeURIComponent(u.password);
      if (u.protocol === "rediss:") node.tls = true;
      return node;
    });
  if (!nodes.length) throw new ConfigError("REDIS_CLUSTER_NODES", "expected at least one host:port");
  return nodes;
}

/** The configured Redis (a cluster or one server), or undefined for the in-process store. */
export const redisTarget = (config: Pick<Config, "redisUrl" | "redisClusterNodes">): RedisTarget | undefined =>
  config.redisClusterNodes ?? config.redisUrl;


/** The response cache's TTL per plan (CACHE_TTL_<PLAN>, seconds; 0: not cached). */
const DEFAULT_CACHE_TTL_SECONDS = { FREE: 300, PRO: 3600, ENTERPRISE: 0 };

const LOG_LEVELS: LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function loadConfig(env: Env = process.env): Config {
  const nodeEnv = str(env, "NODE_ENV") ?? "development";
  const production = nodeEnv === "production";

  const jwtSecret = str(env, "JWT_SECRET");
  if (production && !jwtSecret && !str(env, "JWKS_URL")) {
    throw new ConfigError("JWT_SECRET", "required when NODE_ENV=production");
  }
  // Without an issuer, a tenant could register the issuer the global
  // tokens carry (docs/tenant-config.md).
  if (str(env, "JWKS_URL") && !str(env, "JWT_ISSUER")) {
    throw new ConfigError("JWT_ISSUER", "required when JWKS_URL is set");
  }
  if (str(env, "REDIS_URL") && str(env, "REDIS_CLUSTER_NODES")) {
    throw new ConfigError("REDIS_CLUSTER_NODES", "set either REDIS_URL (one server) or REDIS_CLUSTER_NODES (a cluster), not both");
  }
  if (jwtSecret && jwtSecret.length < 32) {
    throw new ConfigError("JWT_SECRET", "must be at least 32 characters (HS256 needs 256 bits)");
  }

  const logLevel = (str(env, "LOG_LEVEL") ?? (env.VITEST ? "silent" : "info")).toLowerCase() as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError("LOG_LEVEL", `expected one of ${LOG_LEVELS.join(", ")}`);
  }

  const baseDomain = str(env, "BASE_DOMAIN")?.toLowerCase();
  if (baseDomain && !/^[a-z0-9.-]+$/.test(baseDomain)) {
    throw new ConfigError("BASE_DOMAIN", `not a domain name: "${baseDomain}"`);
  }

  const graphiql = bool(env, "GRAPHIQL", !production);
  const pg = ["postgres:", "postgresql:"];
  return {
    nodeEnv,
    production,
    port: int(env, "PORT", 4000, 0, 65535),
    host: str(env, "HOST") ?? (production ? undefined : "127.0.0.1"),
    databaseUrl: url(env, "DATABASE_URL", pg),
    appDatabaseUrl: url(env, "APP_DATABASE_URL", pg),
    platformDatabaseUrl: url(env, "PLATFORM_DATABASE_URL", pg),
    poolSizes: poolSizes(env),
    poolTimeShares: poolTimeShares(env),
    poolTenantMax: poolTenantMax(env),
    preparedStatements: bool(env, "DATABASE_PREPARED_STATEMENTS", true),
    placementServers: placementServers(env),
    placementPoolIdleMs: int(env, "PLACEMENT_POOL_IDLE_MS", 300_000, 0, 86_400_000),
    embeddedPgPort: int(env, "EMBEDDED_PG_PORT", 54329, 1, 65535),
    embeddedPgDataDir: str(env, "EMBEDDED_PG_DATA_DIR") ?? ".data",
    redisUrl: url(env, "REDIS_URL", ["redis:", "rediss:"]),
    redisClusterNodes: redisClusterNodes(env),
    redisKeyPrefix: redisKeyPrefix(env),
    jwtSecret: jwtSecret ?? DEV_JWT_SECRET,
    jwtIssuer: str(env, "JWT_ISSUER"),
    jwtAudience: str(env, "JWT_AUDIENCE"),
    jwksUrl: url(env, "JWKS_URL", ["https:", "http:"]),
    baseDomain,
    platformAdminSubjects: (str(env, "PLATFORM_ADMIN_SUBJECTS") ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    graphiql,
    introspection: bool(env, "INTROSPECTION", !production),
    sqlPlans: bool(env, "SQL_PLANS", true),
    logLevel,
    metricsToken: str(env, "METRICS_TOKEN"),
    migrateOnStart: bool(env, "MIGRATE_ON_START", true),
    seedOnStart: bool(env, "SEED_ON_START", !production),
    maxBodyBytes: int(env, "MAX_BODY_BYTES", 1_048_576, 1024, 100 * 1_048_576),
    trustProxy: trustProxy(env),
    corsOrigins: corsOrigins(env),
    shutdownDrainMs: int(env, "SHUTDOWN_DRAIN_MS", 10_000, 0, 10 * 60_000),
    cacheTtlSeconds: perPlan("CACHE_TTL", (name, plan) => int(env, name, DEFAULT_CACHE_TTL_SECONDS[plan], 0, 30 * 86_400)),
    storageRefreshMs: int(env, "STORAGE_REFRESH_SECONDS", 300, 10, 86_400) * 1000,
  };
}
