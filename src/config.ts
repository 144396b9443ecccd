/**
 * The only reader of process.env. Every variable of SPEC section 2 (and the
 * few this implementation adds) is parsed and validated once, at start-up; a
 * bad value stops the process with one line naming the variable.
 */

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
  dbPoolSize: number;
  embeddedPgPort: number;
  embeddedPgDataDir: string;
  redisUrl: string | undefined;
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
}

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

const LOG_LEVELS: LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function loadConfig(env: Env = process.env): Config {
  const nodeEnv = str(env, "NODE_ENV") ?? "development";
  const production = nodeEnv === "production";

  const jwtSecret = str(env, "JWT_SECRET");
  if (production && !jwtSecret && !str(env, "JWKS_URL")) {
    throw new ConfigError("JWT_SECRET", "required when NODE_ENV=production");
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
    dbPoolSize: int(env, "DB_POOL_SIZE", 20, 1, 500),
    embeddedPgPort: int(env, "EMBEDDED_PG_PORT", 54329, 1, 65535),
    embeddedPgDataDir: str(env, "EMBEDDED_PG_DATA_DIR") ?? ".data",
    redisUrl: url(env, "REDIS_URL", ["redis:", "rediss:"]),
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
  };
}
