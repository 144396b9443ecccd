import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { InFlight } from "../../src/infra/in-flight.ts";
import { StoreUnavailableError, type Store } from "../../src/infra/store.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/**
 * What an app remembers between requests is its own (createApp makes it):
 * two apps in one process, over the same database and store, share neither
 * the rate limiter's in-memory windows (the store's degraded mode) nor the
 * API keys' last-use coalescing. Before, both were module globals.
 */

/** A store whose counters cannot answer (Redis down for INCR, docs/degraded-modes.md); the rest works. */
function countersDown(inner: Store): Store {
  return {
    kind: inner.kind,
    get: (key) => inner.get(key),
    set: (key, value, ttl) => inner.set(key, value, ttl),
    del: (...keys) => inner.del(...keys),
    hit: () => Promise.reject(new StoreUnavailableError("counters down (test)")),
    readAndHit: () => Promise.reject(new StoreUnavailableError("counters down (test)")),
    deletePattern: (pattern) => inner.deletePattern(pattern),
    ping: () => inner.ping(),
    close: () => inner.close(),
  };
}

describe("two apps in one process share no state", () => {
  const clock = new ManualClock();
  const inner = isolatedStore();
  const store = countersDown(inner);
  let a: TestApp;
  let b: App;
  const bWrites = new InFlight();
  let ids: Record<string, string> = {};

  const gql = async (app: App, query: string, headers: Record<string, string>) => {
    const res = await app.fetch("http://localhost/graphql", { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ query }) });
    return { status: res.status, headers: res.headers, body: (await res.json()) as any };
  };

  beforeAll(async () => {
    a = await createTestApp({ store, clock: clock.now });
    b = createApp(testAppDeps(a.clients, store, { clock: clock.now, inFlight: bWrites }));
    for (const tn of await a.clients.platform.tenant.findMany({ select: { id: true, slug: true } })) ids[tn.slug] = tn.id;
  });
  afterAll(async () => {
    await a?.close();
    await inner.close();
  });

  it("the rate limiter's in-memory windows (store unavailable): each app counts its own", async () => {
    await a.clients.platform.tenantLimitOverride.create({ data: { tenantId: ids.globex!, resource: "API_REQUESTS_PER_MINUTE", limit: 2 } });
    await new Directory(a.clients.platform, store).invalidateTenant(ids.globex!, "globex");
    const headers = { authorization: `Bearer ${await a.memberToken("globex", "VIEWER")}` };
    const inA = [];
    for (let i = 0; i < 3; i++) inA.push(await gql(a.app, `{ tenant { slug } }`, headers));
    expect(inA.map((r) => r.status)).toEqual([200, 200, 429]);
    // B has counted nothing: its first request of the window is its first.
    const inB = await gql(b, `{ tenant { slug } }`, headers);
    expect(inB.status).toBe(200);
    expect(inB.headers.get("x-ratelimit-remaining")).toBe("1");
  });

  it("API keys' last uses: B writes its own use, whatever A wrote within the minute", async () => {
    const created = await a.gql(`mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { prefix } } }`, {
      token: await a.memberToken("acme", "ADMIN"),
      variables: { i: { name: "two apps", role: "VIEWER" } },
    });
    expect(created.body.errors).toBeUndefined();
    const { secret, apiKey } = created.body.data.createApiKey;
    const headers = { "x-api-key": secret as string };
    expect((await gql(a.app, `{ tenant { slug } }`, headers)).status).toBe(200);
    await a.settle();
    const lastUsed = async () => (await a.clients.platform.apiKey.findFirstOrThrow({ where: { prefix: apiKey.prefix } })).lastUsedAt?.getTime();
    expect(await lastUsed()).toBe(clock.now());
    clock.advance(1_000);
    expect((await gql(b, `{ tenant { slug } }`, headers)).status).toBe(200);
    await bWrites.settle();
    expect(await lastUsed()).toBe(clock.now());
  });
});
