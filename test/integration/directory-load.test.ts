import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PrismaClient } from "../../src/generated/prisma/client.ts";
import { Directory, STORE_BUDGET_MS } from "../../src/tenancy/directory.ts";
import { tenantKey, type Store } from "../../src/infra/store.ts";
import { createTestApp, type TestApp, tenantIdsBySlug } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * What the directory (src/tenancy/directory.ts) asks of the platform pool,
 * which every tier shares: a lookup goes there only when the store really
 * has no answer (the bench's neighbour scenarios, docs/placement.md "Pools").
 */
describe("directory load on the platform pool", () => {
  let t: TestApp;
  let acme = "";

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    acme = (await tenantIdsBySlug(t)).acme!;
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  /** The platform client, counting the tenant reads that reach PostgreSQL. */
  function countingPlatform() {
    const counter = { reads: 0 };
    const platform = t.clients.platform;
    const client = new Proxy(platform, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== "tenant") return value;
        return new Proxy(value as object, {
          get(model, name, r) {
            const fn = Reflect.get(model, name, r) as unknown;
            if (name !== "findUnique" || typeof fn !== "function") return fn;
            return (...args: unknown[]) => {
              counter.reads++;
              return (fn as (...a: unknown[]) => unknown).apply(model, args);
            };
          },
        });
      },
    }) as PrismaClient;
    return { client, counter };
  }

  it("concurrent misses of one key make one read, and every caller gets the tenant", async () => {
    const { client, counter } = countingPlatform();
    const directory = new Directory(client, t.store);
    await t.store.del(tenantKey(acme, "info"));
    const found = await Promise.all(Array.from({ length: 10 }, () => directory.tenant(acme)));
    expect(found.map((x) => x?.slug)).toEqual(Array(10).fill("acme"));
    expect(counter.reads).toBe(1);
    // Each caller has its own copy.
    expect(new Set(found).size).toBe(10);
  });

  it("an answer that waited in a socket while the process was busy past the budget is a cache hit, and the store stays in use", async () => {
    const { client, counter } = countingPlatform();
    expect((await new Directory(client, t.store).tenant(acme))?.slug).toBe("acme");
    await expect.poll(() => t.store.get(tenantKey(acme, "info"))).not.toBeNull();
    const entry = await t.store.get(tenantKey(acme, "info"));
    // A store whose answer comes over a socket of this process: written
    // before the event loop is blocked past the budget (a saturated
    // process), so it is in the socket, unread, when the budget's timer fires.
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    const accepted = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
    const sender = net.connect(port, "127.0.0.1");
    await new Promise((resolve) => sender.once("connect", resolve));
    const receiver = await accepted;
    const blocking: Store = {
      ...t.store,
      get(key) {
        const answer = new Promise<string | null>((resolve) => receiver.once("data", () => resolve(key === tenantKey(acme, "info") ? entry : null)));
        sender.write("x");
        const until = performance.now() + STORE_BUDGET_MS + 100;
        while (performance.now() < until) {
          // the process is busy elsewhere: nothing of the loop runs
        }
        return answer;
      },
    };
    try {
      const directory = new Directory(client, blocking);
      const lookups: boolean[] = [];
      directory.onCacheLookup = (_key, hit) => lookups.push(hit);
      counter.reads = 0;
      expect((await directory.tenant(acme))?.slug).toBe("acme");
      expect(lookups).toEqual([true]);
      expect(counter.reads).toBe(0);
      expect(directory.storeAvailable).toBe(true);
    } finally {
      sender.destroy();
      receiver.destroy();
      server.close();
    }
  });
});
