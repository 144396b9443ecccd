import { createServer } from "node:http";
import type { createApp as CreateApp } from "./app.ts";
import { ConfigError, DEV_JWT_SECRET, loadConfig, type Config } from "./config.ts";
import { createDatabases } from "./db/clients.ts";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "./db/embedded.ts";
import { runMigrations } from "./db/migrate.ts";
import { DEMO_PLATFORM_ADMIN, DEMO_ROLES, DEMO_TENANTS, demoEmail, ensurePlatformAdmins, seedDemo } from "./db/seed.ts";
import { createLogger } from "./infra/logger.ts";
import { MemoryStore, RedisStore, type Store } from "./infra/store.ts";
import { RequestCounter } from "./infra/request-counter.ts";
import { createTokenVerifier } from "./tenancy/credentials.ts";
import { Directory } from "./tenancy/directory.ts";
import { signDevToken } from "./tenancy/tokens.ts";

/**
 * The process: opens PostgreSQL (or starts the embedded one) and the store,
 * migrates, seeds when empty, serves, and shuts everything down on SIGINT /
 * SIGTERM.
 */
async function main() {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`configuration error: ${err.message}`);
      process.exit(78);
    }
    throw err;
  }
  // The app (schema, Pothos, Prisma) is the heavy import: load it only once
  // the configuration is known good, so a bad variable fails in a moment,
  // and overlap the load with the database start-up.
  const appModule: Promise<{ createApp: typeof CreateApp }> = import("./app.ts");
  appModule.catch(() => {});
  const logger = createLogger(config.logLevel);
  const started = Date.now();

  let embedded: EmbeddedDatabase | undefined;
  let ownerUrl = config.databaseUrl;
  if (!ownerUrl) {
    logger.info({ port: config.embeddedPgPort, dataDir: config.embeddedPgDataDir }, "no DATABASE_URL: starting embedded PostgreSQL");
    embedded = await startEmbeddedPostgres({ dataDir: config.embeddedPgDataDir, port: config.embeddedPgPort });
    ownerUrl = embedded.url;
  }

  if (config.migrateOnStart) {
    const { applied } = await runMigrations(ownerUrl, { log: (l) => logger.info(l) });
    logger.info({ applied: applied.length }, "migrations up to date");
  }

  const db = createDatabases({
    ownerUrl,
    appUrl: config.appDatabaseUrl,
    platformUrl: config.platformDatabaseUrl,
    poolSize: config.dbPoolSize,
  });

  let seeded = false;
  if (config.seedOnStart && (await db.platform.tenant.count()) === 0) {
    await seedDemo(db.platform);
    seeded = true;
    logger.info("seeded demo tenants acme, globex, wayne");
  }
  await ensurePlatformAdmins(db.platform, config.platformAdminSubjects);

  let store: Store;
  if (config.redisUrl) {
    store = new RedisStore(config.redisUrl);
  } else {
    store = new MemoryStore();
    logger.warn("no REDIS_URL: using an in-process store; rate limits and caches hold for this single instance only");
  }

  const requestCounter = new RequestCounter({ db: db.platform, store, logger });
  const { createApp } = await appModule;
  const app = createApp({
    requestCounter,
    pools: { app: db.appPool, platform: db.platformPool },
    app: db.app,
    platform: db.platform,
    store,
    directory: new Directory(db.platform, store),
    verifyToken: createTokenVerifier(config),
    baseDomain: config.baseDomain,
    config,
    logger,
    probes: {
      postgres: async () => (await db.appPool.query("SELECT 1")).rowCount === 1,
      ...(config.redisUrl ? { redis: () => store.ping() } : {}),
    },
  });

  // The Yoga instance is itself a Node request listener.
  const server = createServer(app);
  requestCounter.start();
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(config.port, resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  logger.info({ port, ms: Date.now() - started }, "ready");
  if (!config.production) await printWelcome(config, port, seeded || !!embedded);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    server.closeIdleConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    // The last API request counts reach PostgreSQL before the pools close.
    await requestCounter.stop().catch((err: unknown) => logger.warn({ err }, "final request count flush failed"));
    await db.close();
    await store.close();
    await embedded?.stop();
    logger.info("stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

async function printWelcome(config: Config, port: number, demo: boolean) {
  const url = `http://localhost:${port}/graphql`;
  const lines = [``, `  GraphiQL: ${url}`];
  if (demo && config.jwtSecret === DEV_JWT_SECRET) {
    lines.push(``, `  Demo tokens (valid 24h; header "Authorization: Bearer <token>"):`);
    for (const t of DEMO_TENANTS) {
      for (const role of DEMO_ROLES) {
        const token = await signDevToken({ secret: config.jwtSecret, sub: demoEmail(role, t.slug), tenant: t.slug, ttl: "24h", issuer: config.jwtIssuer, audience: config.jwtAudience });
        lines.push(`  ${t.slug.padEnd(7)} ${role.padEnd(9)} ${token}`);
      }
    }
    const admin = await signDevToken({ secret: config.jwtSecret, sub: DEMO_PLATFORM_ADMIN.subject, ttl: "24h", issuer: config.jwtIssuer, audience: config.jwtAudience });
    lines.push(`  platform admin    ${admin}`);
    lines.push(``, `  First query: { viewer { user { email } tenant { slug plan } role } projects(first: 5) { totalCount edges { node { name deploymentCount } } } }`);
  }
  lines.push(``);
  // The banner is for a person at a terminal, not for the JSON log stream.
  process.stdout.write(lines.join("\n") + "\n");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
