import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.ts";
import { demoEmail } from "../../src/db/seed.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { TEST_JWT_SECRET } from "../helpers/app.ts";
import { startLiveApp, type LiveApp } from "../helpers/live-app.ts";
import { sseSubscribe, type LiveSubscription } from "../helpers/live-client.ts";
import type { OwnRedis } from "../helpers/own-redis.ts";

/**
 * Opening a subscription takes a slot of the tenant's SUBSCRIPTIONS limit in
 * Redis (src/modules/live/stream-slots.ts, on the live bus's publish
 * connection). With Redis hung (SIGSTOP: connections accepted, nothing
 * answered) that command used to wait without end, and the subscriber with
 * it; now it is given up on after the command timeout and the subscriber is
 * told SERVICE_UNAVAILABLE with a retry hint (docs/degraded-modes.md). Once
 * Redis answers again, a subscription opens as usual. A Redis of the test's
 * own (test/helpers/own-redis.ts); the app's other Redis uses are in memory.
 */

const DEPLOYMENTS = `subscription { deploymentUpdated { id status } }`;

describe("live updates with a hung Redis", () => {
  let live: LiveApp;
  let redis: OwnRedis;
  let app: App;
  const open: LiveSubscription[] = [];

  beforeAll(async () => {
    live = await startLiveApp();
    ({ redis, app } = live);
  }, 120_000);

  afterAll(async () => {
    for (const s of open) s.close();
    await live?.close();
  });

  const subscribe = async () => {
    const token = await signDevToken({ secret: TEST_JWT_SECRET, sub: demoEmail("VIEWER", "acme"), tenant: "acme", ttl: "10m" });
    const s = await sseSubscribe((url, init) => app.fetch(url, init), "http://localhost/graphql", { query: DEPLOYMENTS }, { authorization: `Bearer ${token}` });
    open.push(s);
    return s;
  };

  it("a subscription opened while Redis is hung is refused with SERVICE_UNAVAILABLE, and served once Redis answers", async () => {
    const before = await subscribe();
    expect(before.status).toBe(200);
    before.close();

    redis.signal("SIGSTOP");
    // Without a command timeout on the slot's command this never settles (the test times out).
    const during = await subscribe();
    const m = await during.next(15_000);
    expect(m.payload.errors?.[0]?.extensions).toMatchObject({ code: "SERVICE_UNAVAILABLE" });
    expect(m.payload.data ?? null).toBeNull();

    redis.signal("SIGCONT");
    await expect
      .poll(async () => {
        const s = await subscribe();
        const first = await Promise.race([s.next(2_000).then((x) => x.payload?.errors?.[0]?.extensions?.code ?? "event"), new Promise((r) => setTimeout(() => r("open"), 300))]);
        s.close();
        return first;
      }, { timeout: 20_000, interval: 200 })
      .toBe("open");
  }, 60_000);
});
