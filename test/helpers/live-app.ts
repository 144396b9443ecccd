import { createApp, type App } from "../../src/app.ts";
import type { Databases } from "../../src/db/clients.ts";
import { seedDemo } from "../../src/db/seed.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { MemoryStore } from "../../src/infra/memory-store.ts";
import { LiveHub } from "../../src/modules/live/hub.ts";
import { testAppDeps } from "./app.ts";
import { createTestClients, createTestDatabase, type TestDatabase } from "./db.ts";
import { startOwnRedis, type OwnRedis } from "./own-redis.ts";

/**
 * An app whose live hub uses a Redis of the test's own (to kill, restart or
 * hang: test/helpers/own-redis.ts), on a database of its own with the demo
 * tenants; its other Redis uses are in memory. `prepare` runs after the
 * seed, before the hub (e.g. spreading the tenants over placements) and
 * returns its own undo, run by `close`.
 */
export interface LiveApp {
  redis: OwnRedis;
  db: TestDatabase;
  clients: Databases;
  hub: LiveHub;
  app: App;
  close(): Promise<void>;
}

export async function startLiveApp(prepare?: (clients: Databases) => Promise<() => Promise<void>>): Promise<LiveApp> {
  const redis = await startOwnRedis();
  const db = await createTestDatabase();
  const clients = createTestClients(db.url, 3);
  await seedDemo(clients.platform);
  const undo = await prepare?.(clients);
  const hub = new LiveHub({ redis: redis.url, platform: clients.platform, events: clients.live, logger: createLogger("silent") });
  const app = createApp(testAppDeps(clients, new MemoryStore(), { live: hub }));
  return {
    redis,
    db,
    clients,
    hub,
    app,
    async close() {
      redis.signal("SIGCONT");
      await hub.close();
      await undo?.();
      await clients.close();
      await redis.close();
      await db.drop();
    },
  };
}
