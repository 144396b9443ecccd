import { describe, expect, it } from "vitest";
import { DEV_JWT_SECRET, loadConfig } from "../../src/config.ts";
import { ConfigError } from "../../src/config/env.ts";

/** Issue 3 point 2: every variable validated at start-up; a bad one is named. */

const SECRET = "s".repeat(32);

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe("loadConfig", () => {
  it("has sensible defaults with an empty environment", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 4000,
      databaseUrl: undefined,
      redisUrl: undefined,
      jwtSecret: DEV_JWT_SECRET,
      production: false,
      graphiql: true,
      sqlPlans: true,
      migrateOnStart: true,
      seedOnStart: true,
      embeddedPgPort: 54329,
      platformAdminSubjects: [],
      logLevel: "info",
    });
  });

  it("parses every variable", () => {
    const c = loadConfig({
      PORT: "8080",
      DATABASE_URL: "postgresql://u:p@db:5432/app",
      REDIS_URL: "redis://cache:6379",
      JWT_SECRET: SECRET,
      JWT_ISSUER: "https://issuer.test/",
      JWT_AUDIENCE: "tenantgraph",
      JWKS_URL: "https://issuer.test/.well-known/jwks.json",
      BASE_DOMAIN: "Example.COM",
      PLATFORM_ADMIN_SUBJECTS: " ops@x.test , auth0|123 ,,",
      GRAPHIQL: "false",
      SQL_PLANS: "off",
      LOG_LEVEL: "DEBUG",
      METRICS_TOKEN: "m",
      MIGRATE_ON_START: "0",
      SEED_ON_START: "no",
    });
    expect(c).toMatchObject({
      port: 8080,
      databaseUrl: "postgresql://u:p@db:5432/app",
      redisUrl: "redis://cache:6379",
      jwtSecret: SECRET,
      jwtIssuer: "https://issuer.test/",
      jwtAudience: "tenantgraph",
      jwksUrl: "https://issuer.test/.well-known/jwks.json",
      baseDomain: "example.com",
      platformAdminSubjects: ["ops@x.test", "auth0|123"],
      graphiql: false,
      sqlPlans: false,
      logLevel: "debug",
      metricsToken: "m",
      migrateOnStart: false,
      seedOnStart: false,
    });
  });

  it("REDIS_CLUSTER_NODES: seed nodes of a cluster, with credentials and TLS from redis[s]:// entries", () => {
    expect(loadConfig({ REDIS_CLUSTER_NODES: "10.0.0.1:7001, redis-b:7002,redis-c" }).redisClusterNodes).toEqual([
      { host: "10.0.0.1", port: 7001 },
      { host: "redis-b", port: 7002 },
      { host: "redis-c", port: 6379 },
    ]);
    expect(loadConfig({ REDIS_CLUSTER_NODES: "rediss://app:s%3Acret@r1:7001" }).redisClusterNodes).toEqual([
      { host: "r1", port: 7001, username: "app", password: "s:cret", tls: true },
    ]);
    expect(loadConfig({}).redisClusterNodes).toBeUndefined();
  });

  it("REDIS_KEY_PREFIX: empty by default (the keys as before); letters, digits, _ - : ending with ':'", () => {
    expect(loadConfig({}).redisKeyPrefix).toBe("");
    expect(loadConfig({ REDIS_KEY_PREFIX: " staging-eu_1: " }).redisKeyPrefix).toBe("staging-eu_1:");
    expect(loadConfig({ REDIS_KEY_PREFIX: "tg:prod:" }).redisKeyPrefix).toBe("tg:prod:");
    for (const bad of ["stage", "{tenant}:", "a*:", "a?:", "a[b]:", "a b:", "é:", "x".repeat(64) + ":"]) {
      const err = configError({ REDIS_KEY_PREFIX: bad });
      expect(err.variable).toBe("REDIS_KEY_PREFIX");
      expect(err.message).toMatch(/ending with ":"/);
    }
  });

  it("production turns GraphiQL and seeding off by default", () => {
    const c = loadConfig({ NODE_ENV: "production", JWT_SECRET: SECRET });
    expect(c).toMatchObject({ production: true, graphiql: false, seedOnStart: false, introspection: false });
  });

  it.each([
    ["PORT", { PORT: "abc" }],
    ["PORT", { PORT: "70000" }],
    ["PORT", { PORT: "-1" }],
    ["PORT", { PORT: "80.5" }],
    ["LOG_LEVEL", { LOG_LEVEL: "loud" }],
    ["DATABASE_URL", { DATABASE_URL: "not a url" }],
    ["DATABASE_URL", { DATABASE_URL: "mysql://localhost/db" }],
    ["REDIS_URL", { REDIS_URL: "http://localhost:6379" }],
    ["REDIS_CLUSTER_NODES", { REDIS_CLUSTER_NODES: "a:1", REDIS_URL: "redis://cache:6379" }],
    ["REDIS_CLUSTER_NODES", { REDIS_CLUSTER_NODES: "http://a:1" }],
    ["REDIS_CLUSTER_NODES", { REDIS_CLUSTER_NODES: "a:99999" }],
    ["REDIS_CLUSTER_NODES", { REDIS_CLUSTER_NODES: " , " }],
    ["JWKS_URL", { JWKS_URL: "ftp://x/jwks", JWT_ISSUER: "https://idp.test" }],
    ["JWT_ISSUER", { JWKS_URL: "https://idp.test/jwks" }],
    ["JWT_SECRET", { JWT_SECRET: "too-short" }],
    ["JWT_SECRET", { NODE_ENV: "production" }],
    ["BASE_DOMAIN", { BASE_DOMAIN: "bad domain!" }],
    ["GRAPHIQL", { GRAPHIQL: "maybe" }],
    ["SQL_PLANS", { SQL_PLANS: "sometimes" }],
    ["MIGRATE_ON_START", { MIGRATE_ON_START: "sometimes" }],
    ["POOL_SIZE_FREE", { POOL_SIZE_FREE: "0" }],
    ["DB_POOL_SIZE", { DB_POOL_SIZE: "20" }],
    ["POOL_TIME_SHARE_FREE", { POOL_TIME_SHARE_FREE: "half" }],
    ["POOL_TIME_SHARE_FREE", { POOL_TIME_SHARE_FREE: "0" }],
    ["POOL_TIME_SHARE_FREE", { POOL_TIME_SHARE_FREE: "-0.5" }],
    ["POOL_TIME_SHARE_FREE", { POOL_TIME_SHARE_FREE: "5e-1" }],
    ["POOL_TIME_SHARE_PRO", { POOL_TIME_SHARE_PRO: "501" }],
    ["POOL_TIME_SHARE_ENTERPRISE", { POOL_TIME_SHARE_ENTERPRISE: "none" }],
    ["POOL_TIME_SHARE_WINDOW_MS", { POOL_TIME_SHARE_WINDOW_MS: "1.5" }],
    ["POOL_TENANT_MAX_FREE", { POOL_TENANT_MAX_FREE: "0" }],
    ["POOL_TENANT_MAX_PRO", { POOL_TENANT_MAX_PRO: "half" }],
    ["POOL_TENANT_MAX_ENTERPRISE", { POOL_TENANT_MAX_ENTERPRISE: "501" }],
    ["EMBEDDED_PG_PORT", { EMBEDDED_PG_PORT: "x" }],
    ["MAX_BODY_BYTES", { MAX_BODY_BYTES: "10" }],
  ])("a bad %s throws a ConfigError naming it (%j)", (variable, env) => {
    const err = configError(env);
    expect(err.variable).toBe(variable);
    expect(err.message.startsWith(`${variable}:`)).toBe(true);
    expect(err.message).not.toContain("\n");
  });

  it("tenant caps: none by default (the pool's size); each plan settable, `unbounded` lifts it", () => {
    expect(loadConfig({}).poolTenantMax).toEqual({ FREE: null, PRO: null, ENTERPRISE: null });
    expect(loadConfig({ POOL_TENANT_MAX_FREE: "1", POOL_TENANT_MAX_PRO: "unbounded", POOL_TENANT_MAX_ENTERPRISE: "12" }).poolTenantMax).toEqual({ FREE: 1, PRO: null, ENTERPRISE: 12 });
  });

  it("time shares: every plan unbounded by default (opt-in); each plan settable, `unbounded` lifts it", () => {
    expect(loadConfig({}).poolTimeShares).toEqual({ FREE: null, PRO: null, ENTERPRISE: null, windowMs: 1000 });
    expect(loadConfig({ POOL_TIME_SHARE_FREE: "unbounded", POOL_TIME_SHARE_PRO: "1.25", POOL_TIME_SHARE_ENTERPRISE: "4", POOL_TIME_SHARE_WINDOW_MS: "2000" }).poolTimeShares).toEqual({
      FREE: null,
      PRO: 1.25,
      ENTERPRISE: 4,
      windowMs: 2000,
    });
  });

  it("production without JWT_SECRET is accepted when a JWKS is configured", () => {
    const c = loadConfig({ NODE_ENV: "production", JWKS_URL: "https://idp.test/jwks", JWT_ISSUER: "https://idp.test" });
    expect(c.jwksUrl).toBe("https://idp.test/jwks");
  });

  it("a bad secret's value is not echoed", () => {
    expect(configError({ JWT_SECRET: "hunter2-secret" }).message).not.toContain("hunter2");
  });
});
