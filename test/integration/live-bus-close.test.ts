import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/infra/logger.ts";
import { LiveBus } from "../../src/modules/live/bus.ts";
import { eventually } from "../helpers/eventually.ts";
import { startOwnRedis, type OwnRedis } from "../helpers/own-redis.ts";

/**
 * The live bus's SUBSCRIBE and UNSUBSCRIBE (sent by Yoga's Redis event
 * target, which neither waits for nor handles them) with their connection
 * closed under them: Redis hung (SIGSTOP), a tenant listened to and let go,
 * then the bus closed (a shutdown, or the test's teardown) rejects both
 * with "Connection is closed". Unhandled, such a rejection ends a Node
 * process; it failed a CI run of live-redis-hung.test.ts in its teardown.
 * Now each is logged. Vitest fails a run with an unhandled rejection, so
 * this test would too without the handling, beside its own assertions.
 */
describe("live bus: subscriptions pending when the connection closes", () => {
  let redis: OwnRedis;
  const lines: string[] = [];

  beforeAll(async () => {
    redis = await startOwnRedis();
  }, 60_000);
  afterAll(async () => {
    redis?.signal("SIGCONT");
    await redis?.close();
  });

  it("a SUBSCRIBE and an UNSUBSCRIBE rejected by the close are logged, not left unhandled", async () => {
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const bus = new LiveBus(redis.url, createLogger("warn", sink), () => {});
    redis.signal("SIGSTOP");
    bus.listen("00000000-0000-4000-8000-000000000001", () => {});
    bus.unlisten("00000000-0000-4000-8000-000000000001");
    bus.close();
    await eventually("both rejections logged", () => lines.some((l) => l.includes("channel not subscribed")) && lines.some((l) => l.includes("channel not unsubscribed")));
    const logged = lines.filter((l) => l.includes("channel not")).map((l) => JSON.parse(l) as { topic: string; err: { message: string } });
    expect(logged.map((l) => l.err.message)).toEqual(["Connection is closed.", "Connection is closed."]);
    expect(logged.every((l) => l.topic.endsWith("00000000-0000-4000-8000-000000000001}:live"))).toBe(true);
  });
});
