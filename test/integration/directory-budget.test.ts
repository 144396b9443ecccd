import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Directory, STORE_BUDGET_MS } from "../../src/tenancy/directory.ts";
import { tenantKey, type Store } from "../../src/infra/store.ts";
import { createTestApp, type TestApp, tenantIdsBySlug } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * The directory's store budget (src/tenancy/directory.ts) is the store's,
 * not the process's: a saturated server's event loop runs its timers late,
 * and a cache answer that was already in the socket when the budget's timer
 * fired must still be used. Taking the store for slow there sent every
 * lookup of the next second to the platform pool, which every tier shares
 * (the bench's neighbour scenarios: docs/placement.md, "Pools").
 */
describe("directory store budget", () => {
  let t: TestApp;
  let acme = "";
  /** Blocks the event loop right after each GET was sent (a busy process), when set. */
  let blockMs = 0;

  const blocking = (inner: Store): Store => ({
    ...inner,
    get(key) {
      const answer = inner.get(key);
      const until = performance.now() + blockMs;
      while (performance.now() < until) {
        // the process is busy elsewhere: nothing of the loop runs
      }
      return answer;
    },
  });

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    acme = (await tenantIdsBySlug(t)).acme!;
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  it("an answer that waited in the socket while the process was busy past the budget is a cache hit, and the store stays in use", async () => {
    expect(t.store.kind, "needs REDIS_URL: a store that answers over a socket").toBe("redis");
    const directory = new Directory(t.clients.platform, blocking(t.store));
    const lookups: boolean[] = [];
    directory.onCacheLookup = (_key, hit) => lookups.push(hit);
    expect((await directory.tenant(acme))?.slug).toBe("acme");
    // Cached now (the set is not awaited by the lookup: wait for it to land).
    await expect.poll(() => t.store.get(tenantKey(acme, "info"))).not.toBeNull();
    lookups.length = 0;
    blockMs = STORE_BUDGET_MS + 100;
    try {
      expect((await directory.tenant(acme))?.slug).toBe("acme");
    } finally {
      blockMs = 0;
    }
    expect(lookups).toEqual([true]);
    expect(directory.storeAvailable).toBe(true);
  });
});
