import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRedis, type RedisClient } from "../../src/infra/redis.ts";
import { RedisStreamSlots, slotsKey } from "../../src/modules/live/stream-slots.ts";
import { testRedisTarget } from "../helpers/redis-cluster.ts";

/**
 * The stream slots' leases (SUBSCRIPTIONS, src/modules/live/stream-slots.ts)
 * on the real Redis: a renewal extends the lease of every stream it names,
 * of several tenants at once, and only of streams still holding one
 * (on a Redis Cluster too: each tenant's keys in one slot).
 */
describe.runIf(testRedisTarget())("live stream slots", () => {
  let redis: RedisClient;
  const tenants = [randomUUID(), randomUUID()];

  beforeAll(() => {
    redis = connectRedis(testRedisTarget()!);
  });
  afterAll(async () => {
    for (const t of tenants) await redis.del(slotsKey(t));
    redis.disconnect();
  });

  it("renew extends the leases of the named streams of every tenant; a released stream stays gone", async () => {
    const slots = new RedisStreamSlots(redis, 60_000);
    const [a, b] = tenants as [string, string];
    const streams = [
      { tenantId: a, streamId: "a1" },
      { tenantId: a, streamId: "a2" },
      { tenantId: b, streamId: "b1" },
    ];
    for (const s of [...streams, { tenantId: a, streamId: "a3" }]) expect((await slots.acquire(s.tenantId, s.streamId, null)).ok).toBe(true);
    await slots.release(a, "a3");
    // Every lease has run out (scored in the past), as on a replica that stopped renewing.
    for (const s of streams) await redis.zadd(slotsKey(s.tenantId), 1, s.streamId);
    expect([await slots.count(a), await slots.count(b)]).toEqual([0, 0]);
    await slots.renew(streams);
    expect([await slots.count(a), await slots.count(b)]).toEqual([2, 1]);
    expect(await redis.zscore(slotsKey(a), "a3")).toBeNull();
    expect(await redis.pttl(slotsKey(b))).toBeGreaterThan(60_000);
  });
});
