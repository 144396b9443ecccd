/**
 * The only reader of process.env. Every variable of SPEC section 2 (and the
 * few this implementation adds) is parsed and validated once, at start-up; a
 * bad value stops the process with one line naming the variable.
 */

import { isIPv4, isIPv6 } from "node:net";

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

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface Config {
  nodeEnv: string;
  production: boolean;
  port: number;
  /** Connection of the migrator / table owner. Undefined: embedded PostgreSQL. */
  databaseUrl: string | undefined;
  /** Optional separate login for the tenant-scoped role (managed databases). */
  appDatabaseUrl: string | undefined;
  /** Optional separate login for the platform (cross-tenant) role. */
  platformDatabaseUrl: string | undefined;
  /** PostgreSQL connections per process: per plan (POOL_SIZE_FREE, _PRO, _ENTERPRISE), platform and live (POOL_SIZE_PLATFORM, _LIVE). */
  poolSizes: PoolSizes;
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
  jwtSecret: string;
  jwtIssuer: string | undefined;
  jwtAudience: string | undefined;
  jwksUrl: string | undefined;
  baseDomain: string | undefined;
  platformAdminSubjects: string[];
  graphiql: boolean;
  introspection: boolean;
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

/**
 * TRUST_PROXY: `off` (the default), a hop count (that many proxies in front,
 * each appending to X-Forwarded-For), or the proxies' addresses and CIDR
 * ranges (any hop from one of them is believed, walking from the socket).
 */
export type TrustProxy =
  | { kind: "off" }
  | { kind: "hops"; hops: number }
  | { kind: "addresses"; ranges: { address: string; prefix: number; family: "ipv4" | "ipv6" }[] };

export const DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef";

export class ConfigError extends Error {
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `expected ${min}..${max}, got ${n}`);
  return n;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = str(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, "not a valid URL");
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `expected a ${protocols.join(" or ")} URL, got ${parsed.protocol}`);
  }
  return raw;
}

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

function trustProxy(env: Env): TrustProxy {
  const raw = str(env, "TRUST_PROXY");
  if (raw === undefined || ["off", "false", "0", "no"].includes(raw.toLowerCase())) return { kind: "off" };
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops > 32) throw new ConfigError("TRUST_PROXY", `a hop count of at most 32, got ${hops}`);
    return { kind: "hops", hops };
  }
  const ranges = raw.split(",").map((entry) => {
    const text = entry.trim();
    const [address = "", prefixText] = text.split("/");
    const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : null;
    if (!family) throw new ConfigError("TRUST_PROXY", `expected off, a hop count or IP addresses/CIDRs, got "${text}"`);
    const max = family === "ipv4" ? 32 : 128;
    const prefix = prefixText === undefined ? max : /^\d+$/.test(prefixText) ? Number(prefixText) : NaN;
    if (!(prefix >= 0 && prefix <= max)) throw new ConfigError("TRUST_PROXY", `bad prefix length in "${text}"`);
    return { address, prefix, family } as const;
  });
  return { kind: "addresses", ranges };
}

function corsOrigins(env: Env): string[] {
  const raw = str(env, "CORS_ORIGINS");
  if (raw === undefined) return [];
  return raw.split(",").map((entry) => {
    const text = entry.trim();
    if (text === "*") return text;
    let origin: string;
    try {
      origin = new URL(text).origin;
    } catch {
      throw new ConfigError("CORS_ORIGINS", `not an origin: "${text}"`);
    }
    // An origin is scheme://host[:port] exactly, as browsers send it.
    if (origin === "null" || origin !== text.replace(/\/$/, "").toLowerCase()) {
      throw new ConfigError("CORS_ORIGINS", `expected scheme://host[:port], got "${text}"`);
    }
    return origin;
  });
}

/** `PLACEMENT_DATABASE_URLS`: `name=postgresql://...` pairs, comma-separated. */
function parsePlacementServers(value: string | undefined): Record<string, string> {
  const servers: Record<string, string> = {};
  for (const part of (value ?? "").split(",").map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    const name = part.slice(0, eq).trim();
    const url = part.slice(eq + 1).trim();
    if (eq < 1 || !/^[a-z][a-z0-9_-]{0,39}$/.test(name) || name === "default") throw new Error(`PLACEMENT_DATABASE_URLS: bad server name in "${name}"`);
    if (!/^postgres(ql)?:\/\//.test(url)) throw new Error(`PLACEMENT_DATABASE_URLS: ${name} needs a postgresql:// URL`);
    servers[name] = url;
  }
  return servers;
}

function placementServers(env: Env): Record<string, string> {
  try {
    return parsePlacementServers(str(env, "PLACEMENT_DATABASE_URLS"));
  } catch (err) {
    throw new ConfigError("PLACEMENT_DATABASE_URLS", (err as Error).message);
  }
}

function poolSizes(env: Env): PoolSizes {
  // The one pool of the first round, divided by plan since: a value would be ignored without notice.
  if (str(env, "DB_POOL_SIZE") !== undefined) {
    throw new ConfigError("DB_POOL_SIZE", "replaced by POOL_SIZE_FREE, POOL_SIZE_PRO, POOL_SIZE_ENTERPRISE (connections per plan) and POOL_SIZE_PLATFORM");
  }
  const d = DEFAULT_POOL_SIZES;
  return {
    FREE: int(env, "POOL_SIZE_FREE", d.FREE, 1, 500),
    PRO: int(env, "POOL_SIZE_PRO", d.PRO, 1, 500),
    ENTERPRISE: int(env, "POOL_SIZE_ENTERPRISE", d.ENTERPRISE, 1, 500),
    platform: int(env, "POOL_SIZE_PLATFORM", d.platform, 1, 500),
    live: int(env, "POOL_SIZE_LIVE", d.live, 1, 500),
  };
}

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
    databaseUrl: url(env, "DATABASE_URL", pg),
    appDatabaseUrl: url(env, "APP_DATABASE_URL", pg),
    platformDatabaseUrl: url(env, "PLATFORM_DATABASE_URL", pg),
    poolSizes: poolSizes(env),
    placementServers: placementServers(env),
    placementPoolIdleMs: int(env, "PLACEMENT_POOL_IDLE_MS", 300_000, 0, 86_400_000),
    embeddedPgPort: int(env, "EMBEDDED_PG_PORT", 54329, 1, 65535),
    embeddedPgDataDir: str(env, "EMBEDDED_PG_DATA_DIR") ?? ".data",
    redisUrl: url(env, "REDIS_URL", ["redis:", "rediss:"]),
    redisClusterNodes: redisClusterNodes(env),
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
    logLevel,
    metricsToken: str(env, "METRICS_TOKEN"),
    migrateOnStart: bool(env, "MIGRATE_ON_START", true),
    seedOnStart: bool(env, "SEED_ON_START", !production),
    maxBodyBytes: int(env, "MAX_BODY_BYTES", 1_048_576, 1024, 100 * 1_048_576),
    trustProxy: trustProxy(env),
    corsOrigins: corsOrigins(env),
    shutdownDrainMs: int(env, "SHUTDOWN_DRAIN_MS", 10_000, 0, 10 * 60_000),
    cacheTtlSeconds: {
      FREE: int(env, "CACHE_TTL_FREE", 300, 0, 30 * 86_400),
      PRO: int(env, "CACHE_TTL_PRO", 3600, 0, 30 * 86_400),
      ENTERPRISE: int(env, "CACHE_TTL_ENTERPRISE", 0, 0, 30 * 86_400),
    },
    storageRefreshMs: int(env, "STORAGE_REFRESH_SECONDS", 300, 10, 86_400) * 1000,
  };
}
