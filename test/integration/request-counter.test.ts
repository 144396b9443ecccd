import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hourStart, requestCounterKey, RequestCounter, REQUEST_RESOURCE } from "../../src/infra/request-counter.ts";
import { createTestApp, type TestApp, tenantIdsBySlug } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * Issue 6 point 3: API requests per tenant per hour, counted in the store on
 * every tenant-scoped request, flushed to usage_counters in batches (one
 * statement per flush, none per request), and not lost across a restart.
 * The app counts in the hours of its clock, which stands still here in an
 * hour of the file's own (no request of a test falls in the next hour, and
 * the counts read are the app's, not the wall clock's hour).
 */

const NOW = Date.UTC(2026, 2, 1, 10, 30);
const clock = () => NOW;

describe("API request counting", () => {
  let t: TestApp;
  let acmeId: string;
  let globexId: string;

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore(), clock });
    ({ acme: acmeId, globex: globexId } = (await tenantIdsBySlug(t)) as { acme: string; globex: string });
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  const persisted = async (tenantId: string, at = NOW) =>
    (
      await t.clients.platform.usageCounter.findUnique({
        where: { tenantId_resource_windowStart: { tenantId, resource: REQUEST_RESOURCE, windowStart: new Date(hourStart(at)) } },
      })
    )?.count ?? 0;

  it("every tenant-scoped request is counted in the store, not in PostgreSQL", async () => {
    const token = await t.memberToken("acme", "VIEWER");
    const before = Number((await t.store.get(requestCounterKey(acmeId, hourStart(NOW)))) ?? 0);
    const persistedBefore = await persisted(acmeId);
    for (let i = 0; i < 3; i++) expect((await t.gql(`{ tenant { slug } }`, { token })).status).toBe(200);
    // A request without a tenant is not counted.
    await t.gql(`{ viewer { isPlatformAdmin } }`, { token: await t.adminToken() });
    const after = Number(await t.store.get(requestCounterKey(acmeId, hourStart(NOW))));
    expect(after - before).toBe(3);
    expect(await persisted(acmeId)).toBe(persistedBefore);
  });

  it("a flush writes the hour totals in one statement; a new flusher instance (restart) picks up what was never flushed", async () => {
    // An hour of its own: the other tests count globex's requests in the current one.
    const now = Date.UTC(2026, 1, 1, 10, 30);
    const counter = () => new RequestCounter({ db: t.clients.platform, store: t.store, now: () => now });
    const a = counter();
    await a.record(globexId, 5);
    expect(await a.flush()).toBeGreaterThanOrEqual(1);
    expect(await persisted(globexId, now)).toBe(5);
    // Counted but never flushed: the process dies.
    await a.record(globexId, 3);
    expect(await persisted(globexId, now)).toBe(5);
    // The restarted process knows nothing of it, and still writes it: the totals live in the store.
    const b = counter();
    await b.flush();
    expect(await persisted(globexId, now)).toBe(8);
    // Idempotent: flushing again (or from another replica) does not double count.
    await b.flush();
    await counter().flush();
    expect(await persisted(globexId, now)).toBe(8);
  });

  it("the app's own requests reach usage_counters through a flush and show up in Platform.tenantUsage", async () => {
    const token = await t.memberToken("acme", "VIEWER");
    await t.gql(`{ tenant { slug } }`, { token });
    const inStore = Number(await t.store.get(requestCounterKey(acmeId, hourStart(NOW))));
    await new RequestCounter({ db: t.clients.platform, store: t.store, now: clock }).flush();
    expect(await persisted(acmeId)).toBe(inStore);
    const res = await t.gql(`{ platform { tenantUsage(first: 10) { edges { node { tenant { slug } apiRequests } } } } }`, { token: await t.adminToken() });
    expect(res.body.errors).toBeUndefined();
    const acme = res.body.data.platform.tenantUsage.edges.find((e: any) => e.node.tenant.slug === "acme");
    expect(acme.node.apiRequests).toBe(inStore);
  });

  // globex's: acme's totals in Platform.tenantUsage must be the app's own requests alone.
  it("hours are separate rows; stop() flushes what is pending", async () => {
    let clock = Date.UTC(2026, 0, 1, 10, 59, 0);
    const c = new RequestCounter({ db: t.clients.platform, store: t.store, now: () => clock });
    await c.record(globexId, 2);
    clock += 2 * 60_000; // 11:01
    await c.record(globexId, 4);
    c.start();
    await c.stop();
    const rows = await t.clients.platform.usageCounter.findMany({
      where: { tenantId: globexId, resource: REQUEST_RESOURCE, windowStart: { lt: new Date(Date.UTC(2026, 0, 2)) } },
      orderBy: { windowStart: "asc" },
    });
    expect(rows.map((r) => [r.windowStart.toISOString(), r.count])).toEqual([
      ["2026-01-01T10:00:00.000Z", 2],
      ["2026-01-01T11:00:00.000Z", 4],
    ]);
  });

  it("a flush of a tenant purged meanwhile skips it instead of failing", async () => {
    const c = new RequestCounter({ db: t.clients.platform, store: t.store });
    await c.record("0b7f0c5e-9d2a-4c1e-8f00-00000000abcd", 1);
    await c.record(globexId, 1);
    await expect(c.flush()).resolves.toBeGreaterThanOrEqual(1);
  });
});
