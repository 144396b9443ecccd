import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisStore } from "../../src/infra/store.ts";
import { rateLimitWindowKey } from "../../src/infra/rate-limit.ts";
import { STORE_BUDGET_MS } from "../../src/tenancy/directory-cache.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { startOwnRedis, type OwnRedis } from "../helpers/own-redis.ts";

/**
 * review CR-1: a request is counted ONCE in its rate-limit window although
 * Redis answered the context's counted read (the tenant entry, the
 * membership and the window's hit in one script, Store.readAndHit) after
 * the directory's budget (STORE_BUDGET_MS) but before the store's own
 * command timeout. The directory then answers from PostgreSQL; before the
 * fix the rate limiter counted the request again with a hit of its own,
 * and the late script counted it too: two in the shared window.
 *
 * The slowness is real: the test's own redis-server pauses its writers
 * (CLIENT PAUSE ... WRITE: reads are answered, scripts wait) for three
 * budgets; the directory's reads of the user and the slug are answered at
 * once, the counted read waits, and every command waiting runs when the
 * pause ends.
 */
describe("rate limit with a Redis slower than the directory's budget", () => {
  let redis: OwnRedis;
  let store: RedisStore;
  let t: TestApp;
  let acme: string;
  const clock = new ManualClock();

  beforeAll(async () => {
    redis = await startOwnRedis();
    // A command timeout well past the budget: the late answer arrives, it is not cut off.
    store = new RedisStore(redis.url, { commandTimeoutMs: 10_000 });
    t = await createTestApp({ store, clock: clock.now });
    acme = (await tenantIdsBySlug(t)).acme!;
  });
  afterAll(async () => {
    await t?.close();
    await store?.close();
    await redis?.close();
  });

  const windowCount = async () => Number((await redis.client.get(rateLimitWindowKey(acme, clock.now()))) ?? 0);

  it("a counted read answered late counts the request once, in Redis", async () => {
    const token = await t.memberToken("acme", "DEVELOPER");
    const ask = () => t.gql(`{ tenant { slug } }`, { token });
    // Warm: the entries cached, the next request counted by the script itself.
    expect((await ask()).status).toBe(200);
    expect((await ask()).status).toBe(200);
    await t.settle();
    const before = await windowCount();
    expect(before).toBe(2);

    // The directory's budget is a real timer (the store's time, not the app's): the pause outlasts it.
    await redis.client.call("CLIENT", "PAUSE", String(STORE_BUDGET_MS * 3), "WRITE");
    const answered = await ask();
    expect(answered.status).toBe(200);
    expect(answered.body.data.tenant.slug).toBe("acme");
    await t.settle();
    expect(await windowCount()).toBe(before + 1);
    expect(answered.headers.get("x-ratelimit-remaining")).toBe(String(Number(answered.headers.get("x-ratelimit-limit")) - (before + 1)));
  });
});
