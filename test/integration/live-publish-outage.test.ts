import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { createLogger } from "../../src/infra/logger.ts";
import { LiveHub } from "../../src/modules/live/hub.ts";
import { createTestClients, createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { startOwnRedis, type OwnRedis } from "../helpers/own-redis.ts";
import type { Databases } from "../../src/db/clients.ts";
import { eventually } from "../helpers/eventually.ts";

/**
 * A mutation publishes its live events at its COMMIT, whatever Redis does
 * meanwhile. With Redis killed, the hub's PUBLISH fails (ioredis gives up
 * after its retries): that failure is logged, never an unhandled rejection
 * (which ended both replicas of the chaos run during a Redis restart).
 * Vitest fails a run with an unhandled rejection, so this test would too.
 */
describe("live hub: publishing with Redis down", () => {
  let redis: OwnRedis;
  let db: TestDatabase;
  let clients: Databases;
  let hub: LiveHub;
  const lines: string[] = [];

  beforeAll(async () => {
    redis = await startOwnRedis();
    db = await createTestDatabase();
    clients = createTestClients(db.url, 2);
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    hub = new LiveHub({ redis: redis.url, platform: clients.platform, events: clients.live, logger: createLogger("warn", sink) });
  });
  afterAll(async () => {
    await hub?.close();
    await redis?.close();
    await clients?.close();
    await db?.drop();
  });

  it("a PUBLISH that fails is logged and the process carries on; after close() nothing is sent", async () => {
    hub.publish("00000000-0000-4000-8000-000000000001", [{ type: "access" }]);
    await redis.kill();
    hub.publish("00000000-0000-4000-8000-000000000001", [{ type: "Deployment", id: "00000000-0000-4000-8000-000000000002" }]);
    await eventually("the failed PUBLISH's log line", () => lines.some((l) => l.includes("event not published")));
    expect(lines.filter((l) => l.includes("event not published")).length).toBeGreaterThan(0);
    await hub.close();
    const before = lines.length;
    hub.publish("00000000-0000-4000-8000-000000000001", [{ type: "access" }]);
    await new Promise((r) => setImmediate(r));
    expect(lines.length).toBe(before);
  });
});
