import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RateLimiter } from "../../src/infra/rate-limit.ts";
import { MemoryStore } from "../../src/infra/memory-store.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { createTestApp, type TestApp, tenantIdsBySlug } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * SPEC section 6: every tenant-scoped request counts against the tenant's
 * API_REQUESTS_PER_MINUTE (per-tenant overrides win), atomically in the
 * store; over it HTTP 429, Retry-After, RATE_LIMITED; other tenants are not
 * affected; keys are `t:{<tenantId>}:...`.
 */

/**
 * The limiter counts fixed one-minute windows of the app's clock. The tests
 * inject one that stands still a second into a minute, so no burst can
 * straddle a window's edge, however slow the machine, and no test waits for a
 * minute to pass. Each test has a minute of its own and leaves no override
 * behind: none sees another's counts or limits, in whatever order they run.
 */
let minute = Math.floor(Date.now() / 60_000);
let now = 0;
const clock = () => now;

describe("rate limit", () => {
  let t: TestApp;
  let directory: Directory;
  let ids: Record<string, string> = {};

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore(), clock });
    directory = new Directory(t.clients.platform, t.store);
    ids = await tenantIdsBySlug(t);
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });
  beforeEach(() => {
    minute += 1;
    now = minute * 60_000 + 1000;
  });
  afterEach(async () => {
    await t.clients.platform.tenantLimitOverride.deleteMany({ where: { resource: "API_REQUESTS_PER_MINUTE" } });
    for (const [slug, tenantId] of Object.entries(ids)) await directory.invalidateTenant(tenantId, slug);
  });

  async function setLimit(slug: string, limit: number | null) {
    const tenantId = ids[slug]!;
    await t.clients.platform.tenantLimitOverride.upsert({
      where: { tenantId_resource: { tenantId, resource: "API_REQUESTS_PER_MINUTE" } },
      create: { tenantId, resource: "API_REQUESTS_PER_MINUTE", limit },
      update: { limit },
    });
    await directory.invalidateTenant(tenantId, slug);
  }

  it("the plan's limit is announced: globex (FREE) 100/min, acme (PRO) 1000/min", async () => {
    const g = await t.gql(`{ tenant { slug } }`, { token: await t.memberToken("globex", "VIEWER") });
    expect(g.headers.get("x-ratelimit-limit")).toBe("100");
    expect(g.headers.get("x-tenant-id")).toBe(ids.globex);
    const a = await t.gql(`{ tenant { slug } }`, { token: await t.memberToken("acme", "VIEWER") });
    expect(a.headers.get("x-ratelimit-limit")).toBe("1000");
  });

  it("over an override of 5/min: the 6th and later requests get 429, Retry-After, RATE_LIMITED; acme is unaffected", async () => {
    await setLimit("globex", 5);
    const token = await t.memberToken("globex", "DEVELOPER");
    const results = [];
    for (let i = 0; i < 7; i++) results.push(await t.gql(`{ tenant { slug } }`, { token }));

    const limited = results.slice(5);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429, 429]);
    expect(results.map((r) => r.headers.get("x-ratelimit-remaining"))).toEqual(["4", "3", "2", "1", "0", "0", "0"]);
    for (const r of results) {
      expect(r.headers.get("x-ratelimit-limit")).toBe("5");
      // The end of the clock's window.
      expect(Number(r.headers.get("x-ratelimit-reset"))).toBe(now / 1000 + 59);
    }
    for (const r of results.slice(0, 5)) expect(r.body.data?.tenant?.slug).toBe("globex");
    for (const r of limited) {
      expect(r.status).toBe(429);
      expect(r.body.errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
      expect(r.body.data ?? null).toBeNull();
      expect(Number(r.headers.get("retry-after"))).toBe(59);
      expect(r.headers.get("x-ratelimit-remaining")).toBe("0");
      expect(r.headers.get("x-tenant-id")).toBe(ids.globex);
    }

    // Another tenant is not slowed down, and neither is a tenant-less call.
    const acme = await t.gql(`{ tenant { slug } }`, { token: await t.memberToken("acme", "VIEWER") });
    expect(acme.status).toBe(200);
    expect(acme.body.data.tenant.slug).toBe("acme");
    expect(Number(acme.headers.get("x-ratelimit-remaining"))).toBeGreaterThan(990);
    const bare = await t.gql(`{ viewer { user { email } } }`, { token: await t.token("viewer@globex.test") });
    expect(bare.status).toBe(200);
    expect(bare.headers.get("x-ratelimit-limit")).toBeNull();
  });

  it("concurrent requests cannot overshoot the limit", async () => {
    await setLimit("wayne", 5);
    const token = await t.memberToken("wayne", "VIEWER");
    const results = await Promise.all(Array.from({ length: 15 }, () => t.gql(`{ tenant { slug } }`, { token })));
    expect(results.filter((r) => r.status === 200)).toHaveLength(5);
    expect(results.filter((r) => r.status === 429)).toHaveLength(10);
  });

  it("a limit lowered behind the cache: the request counted against the cached one is refused with the clock's Retry-After", async () => {
    await setLimit("globex", 5);
    const token = await t.memberToken("globex", "VIEWER");
    for (let i = 0; i < 3; i++) expect((await t.gql(`{ tenant { slug } }`, { token })).status).toBe(200);
    // PostgreSQL's limit drops to 2; the directory's cached tenant still says 5.
    await t.clients.platform.tenantLimitOverride.update({
      where: { tenantId_resource: { tenantId: ids.globex!, resource: "API_REQUESTS_PER_MINUTE" } },
      data: { limit: 2 },
    });
    const res = await t.gql(`{ tenant { slug } }`, { token });
    expect(res.status).toBe(429);
    expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: "RATE_LIMITED", limit: 2 });
    expect(res.headers.get("x-ratelimit-limit")).toBe("2");
    // The clock stands a second into its minute.
    expect(Number(res.headers.get("retry-after"))).toBe(59);
  });

  it("a null override means unlimited: no rate-limit headers", async () => {
    await setLimit("wayne", null);
    const res = await t.gql(`{ tenant { slug } }`, { token: await t.memberToken("wayne", "VIEWER") });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-ratelimit-limit")).toBeNull();
  });

  it.runIf(process.env.REDIS_URL)("counts in Redis under t:{<tenantId>}:...", async () => {
    const redis = new Redis(process.env.REDIS_URL!);
    try {
      await t.gql(`{ tenant { slug } }`, { token: await t.memberToken("acme", "VIEWER") });
      const keys: string[] = [];
      let cursor = "0";
      do {
        const [next, batch] = await redis.scan(cursor, "MATCH", `*t:{${ids.acme}}:rl:*`, "COUNT", 1000);
        keys.push(...batch);
        cursor = next;
      } while (cursor !== "0");
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) {
        expect(key).toMatch(new RegExp(`(^|:)t:\\{${ids.acme}\\}:rl:\\d+$`));
        expect(Number(await redis.get(key))).toBeGreaterThan(0);
        const ttl = await redis.pttl(key);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(60_000);
      }
    } finally {
      redis.disconnect();
    }
  });
});

describe("RateLimiter (unit, in-process store)", () => {
  it("counts per tenant and refuses over the limit with the state attached", async () => {
    const limiter = new RateLimiter(new MemoryStore(), () => 61_000);
    const a = await limiter.consume("tenant-a", 2);
    expect(a).toMatchObject({ limit: 2, remaining: 1 });
    expect((await limiter.consume("tenant-a", 2)).remaining).toBe(0);
    await expect(limiter.consume("tenant-a", 2)).rejects.toMatchObject({
      extensions: { code: "RATE_LIMITED", http: { status: 429 } },
      rateLimit: { limit: 2, remaining: 0 },
    });
    expect((await limiter.consume("tenant-b", 2)).remaining).toBe(1);
  });
});
