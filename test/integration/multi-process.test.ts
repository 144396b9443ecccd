import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Databases } from "../../src/db/clients.ts";
import { RedisStore } from "../../src/infra/store.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { createTestClients, createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { type ServerProcess, startReplicaPair } from "../helpers/server-process.ts";

/**
 * Two real server processes over one database and one Redis: the rate limit
 * and membership changes hold across replicas (SPEC sections 4 and 6).
 * Without REDIS_URL each process has its own in-process store, which is
 * single-instance by design, so the suite needs a real Redis.
 */

const JWT_SECRET = "multi-process-secret-0123456789abcdef0123";
// A logical database of its own: the servers' keys (`u:sub:owner@acme.test`,
// `tslug:acme`) must not meet the keys of other test files' demo tenants.
const REDIS_DB = 9;

/** The limiter's fixed one-minute window now (the servers' clock is this machine's). */
const minuteWindow = () => Math.floor(Date.now() / 60_000);

function redisUrlWithDb(url: string, db: number) {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

describe.runIf(process.env.REDIS_URL)("two server processes sharing one Redis", () => {
  let db: TestDatabase;
  let clients: Databases;
  let redisUrl: string;
  let redis: Redis;
  let store: RedisStore;
  let directory: Directory;
  let A: ServerProcess;
  let B: ServerProcess;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    redisUrl = redisUrlWithDb(process.env.REDIS_URL!, REDIS_DB);
    redis = new Redis(redisUrl);
    await redis.flushdb();
    db = await createTestDatabase();
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: redisUrl,
      MIGRATE_ON_START: "true",
      SEED_ON_START: "true",
      JWT_SECRET,
      LOG_LEVEL: "silent",
      BASE_DOMAIN: "localhost",
      PLATFORM_ADMIN_SUBJECTS: "admin@globex.test",
    };
    [A, B] = await startReplicaPair(env);
    clients = createTestClients(db.url, 2);
    store = new RedisStore(redisUrl);
    directory = new Directory(clients.platform, store);
    for (const tn of await clients.platform.tenant.findMany()) ids[tn.slug] = tn.id;
  }, 180_000);

  afterAll(async () => {
    await Promise.allSettled([A?.stop(), B?.stop()]);
    await clients?.close();
    await store?.close();
    await redis?.flushdb().catch(() => {});
    redis?.disconnect();
    await db?.drop();
  });

  const token = (sub: string, tenant?: string) => signDevToken({ secret: JWT_SECRET, sub, tenant, ttl: "10m" });

  async function query(server: ServerProcess, q: string, bearer: string) {
    const res = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ query: q }),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as { data?: any; errors?: any[] } };
  }

  it("both processes serve the seeded tenants", async () => {
    expect(Object.keys(ids).sort()).toEqual(["acme", "globex", "wayne"]);
    const t = await token("viewer@acme.test", "acme");
    for (const server of [A, B]) {
      const res = await query(server, `{ tenant { slug } }`, t);
      expect(res.body.data?.tenant?.slug).toBe("acme");
    }
    expect(A.child.pid).not.toBe(B.child.pid);
  });

  it("PLATFORM_ADMIN_SUBJECTS made its subjects platform admins at start", async () => {
    const res = await query(B, `{ viewer { isPlatformAdmin } }`, await token("admin@globex.test"));
    expect(res.body.data?.viewer?.isPlatformAdmin).toBe(true);
    const other = await query(B, `{ viewer { isPlatformAdmin } }`, await token("owner@globex.test"));
    expect(other.body.data?.viewer?.isPlatformAdmin).toBe(false);
  });

  it("the rate limit holds across both: limit 6, 4 requests to each → exactly 6 succeed", async () => {
    await clients.platform.tenantLimitOverride.upsert({
      where: { tenantId_resource: { tenantId: ids.globex!, resource: "API_REQUESTS_PER_MINUTE" } },
      create: { tenantId: ids.globex!, resource: "API_REQUESTS_PER_MINUTE", limit: 6 },
      update: { limit: 6 },
    });
    await directory.invalidateTenant(ids.globex!, "globex");
    const t = await token("developer@globex.test", "globex");
    let results: Awaited<ReturnType<typeof query>>[];
    for (;;) {
      // The burst alone in one window: its count starts from zero, and a burst
      // that met the window's edge (started in one, ended in the next) runs again.
      const window = minuteWindow();
      await redis.del(`t:{${ids.globex}}:rl:${window}`);
      results = [];
      for (let i = 0; i < 4; i++) {
        results.push(await query(A, `{ tenant { slug } }`, t));
        results.push(await query(B, `{ tenant { slug } }`, t));
      }
      if (minuteWindow() === window) break;
    }
    const ok = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    expect(ok).toHaveLength(6);
    expect(limited).toHaveLength(2);
    for (const r of results) expect(r.headers.get("x-ratelimit-limit")).toBe("6");
    for (const r of limited) {
      expect(r.body.errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    }
    // The counter lives in the shared Redis under the tenant's namespace.
    const keys = await redis.keys(`t:{${ids.globex}}:rl:*`);
    expect(keys.length).toBeGreaterThan(0);
    // acme is not affected.
    const acme = await query(B, `{ tenant { slug } }`, await token("viewer@acme.test", "acme"));
    expect(acme.status).toBe(200);
  });

  it("a role change made elsewhere applies on the other process's very next request", async () => {
    const t = await token("viewer@acme.test", "acme");
    // Warm both processes (and the shared cache) with the old role.
    expect((await query(A, `{ viewer { role } }`, t)).body.data?.viewer?.role).toBe("VIEWER");
    expect((await query(B, `{ viewer { role } }`, t)).body.data?.viewer?.role).toBe("VIEWER");
    const user = await clients.platform.user.findUniqueOrThrow({ where: { email: "viewer@acme.test" } });
    await clients.platform.membership.update({
      where: { tenantId_userId: { tenantId: ids.acme!, userId: user.id } },
      data: { role: "ADMIN" },
    });
    await directory.invalidateMembership(ids.acme!, user.id);
    expect((await query(B, `{ viewer { role } }`, t)).body.data?.viewer?.role).toBe("ADMIN");
    expect((await query(A, `{ viewer { role } }`, t)).body.data?.viewer?.role).toBe("ADMIN");
  });

  it("a removal made elsewhere is refused by the other process on the very next request", async () => {
    const t = await token("developer@acme.test", "acme");
    expect((await query(A, `{ tenant { slug } }`, t)).body.data?.tenant?.slug).toBe("acme");
    expect((await query(B, `{ tenant { slug } }`, t)).body.data?.tenant?.slug).toBe("acme");
    const user = await clients.platform.user.findUniqueOrThrow({ where: { email: "developer@acme.test" } });
    await clients.platform.membership.delete({ where: { tenantId_userId: { tenantId: ids.acme!, userId: user.id } } });
    await directory.invalidateMembership(ids.acme!, user.id);
    const res = await query(B, `{ tenant { slug } }`, t);
    expect(res.status).toBe(403);
    expect(res.body.errors?.[0]?.extensions?.code).toBe("TENANT_ACCESS_DENIED");
    expect((await query(A, `{ tenant { slug } }`, t)).body.errors?.[0]?.extensions?.code).toBe("TENANT_ACCESS_DENIED");
  });

  it("a suspension made elsewhere applies on both", async () => {
    const t = await token("owner@wayne.test", "wayne");
    expect((await query(A, `{ tenant { slug } }`, t)).body.data?.tenant?.slug).toBe("wayne");
    await clients.platform.tenant.update({ where: { id: ids.wayne }, data: { status: "SUSPENDED" } });
    await directory.invalidateTenant(ids.wayne!, "wayne");
    for (const server of [B, A]) {
      expect((await query(server, `{ tenant { slug } }`, t)).body.errors?.[0]?.extensions?.code).toBe("TENANT_SUSPENDED");
    }
  });
  it("a feature change made through one process applies on the other's very next request (issue 18)", async () => {
    const { newSecret } = await import("../../src/modules/api-keys/api-key.service.ts");
    const { secret, prefix, secretHash } = newSecret();
    await clients.platform.apiKey.create({ data: { tenantId: ids.acme!, name: "two processes", role: "VIEWER", prefix, secretHash } });
    const withKey = (server: ServerProcess) =>
      fetch(`${server.url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": secret },
        body: JSON.stringify({ query: `{ tenant { slug features } }` }),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as { data?: any; errors?: any[] } }));
    // Warm both processes and the shared cache with PRO's features.
    for (const server of [A, B]) expect((await withKey(server)).body.data?.tenant?.features).toEqual(["api_access", "advanced_analytics"]);
    const admin = await token("admin@globex.test");
    const tenantId = Buffer.from(`Tenant:${ids.acme}`).toString("base64");
    const setFeatures = (features: string[] | null) =>
      query(A, `mutation { setTenantFeatures(input: { tenantId: "${tenantId}", features: ${features ? JSON.stringify(features) : "null"} }) { tenant { features } } }`, admin);
    expect((await setFeatures(["advanced_analytics"])).body.errors).toBeUndefined();
    const refused = await withKey(B);
    expect([refused.status, refused.body.errors?.[0]?.extensions?.code, refused.body.errors?.[0]?.extensions?.feature]).toEqual([
      403,
      "FEATURE_NOT_AVAILABLE",
      "api_access",
    ]);
    expect((await setFeatures(null)).body.errors).toBeUndefined();
    expect((await withKey(B)).body.data?.tenant?.slug).toBe("acme");
    // A plan change through A: FREE has no api_access.
    const plan = (p: string) => query(A, `mutation { changeTenantPlan(input: { tenantId: "${tenantId}", plan: ${p} }) { tenant { plan } } }`, admin);
    expect((await plan("FREE")).body.errors).toBeUndefined();
    expect((await withKey(B)).body.errors?.[0]?.extensions).toMatchObject({ code: "FEATURE_NOT_AVAILABLE", plan: "FREE" });
    expect((await plan("PRO")).body.errors).toBeUndefined();
    expect((await withKey(B)).body.errors).toBeUndefined();
  });
});
