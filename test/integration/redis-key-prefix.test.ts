import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import type { Databases } from "../../src/db/clients.ts";
import { DEMO_PLATFORM_ADMIN, demoEmail, seedDemo } from "../../src/db/seed.ts";
import type { Role } from "../../src/generated/prisma/enums.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { DEFAULT_CACHE_TTL_SECONDS } from "../../src/infra/response-cache.ts";
import { hourStart } from "../../src/infra/request-counter.ts";
import { RedisStore, tenantKey } from "../../src/infra/store.ts";
import { connectRedis, hashTag, isCluster } from "../../src/infra/redis.ts";
import { LiveHub } from "../../src/modules/live/hub.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { testAppDeps, TEST_JWT_SECRET } from "../helpers/app.ts";
import { createTestClients, createTestDatabase, databaseUrl, dropDatabase, testServerUrl, type TestDatabase } from "../helpers/db.ts";
import { sseSubscribe, type LiveSubscription } from "../helpers/live-client.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { testRedisTarget } from "../helpers/redis-cluster.ts";

/**
 * REDIS_KEY_PREFIX (docs/scale-out.md, "Sharing one Redis"): two deployments
 * whose main databases are copies (staging restored from production: the same
 * tenant ids) share one Redis (one server, or the cluster under
 * `npm run test:cluster`), each under its own prefix. Before the prefix,
 * their rate-limit windows, quotas, counters, stream slots and live channels
 * were one: B's requests spent A's budget, A's committed changes reached B's
 * streams, and A's cache purge deleted B's entries.
 *
 * A2 is a replica of A (A's database, A's prefix, connections of its own):
 * what must still be shared within one deployment is, so a prefix that broke
 * pub/sub or the counters could not pass for isolation.
 */
const target = testRedisTarget();

describe.runIf(target)("two deployments on one Redis, each under its REDIS_KEY_PREFIX", () => {
  const base = `test:${randomBytes(6).toString("hex")}:`;
  // The app's clock: each test in a minute of its own (rate-limit windows), all in one hour.
  const clock = new ManualClock(hourStart(Date.now()) + 1_000);
  const logger = createLogger("silent");
  let origin: TestDatabase;
  const copyName = `tg_test_prefix_copy_${randomBytes(6).toString("hex")}`;
  interface Deployment {
    app: App;
    clients: Databases;
    store: RedisStore;
    live: LiveHub;
    settle(): Promise<void>;
  }
  const d = {} as Record<"a" | "a2" | "b", Deployment>;
  const open: LiveSubscription[] = [];
  let acmeId: string;

  function deployment(url: string, keyPrefix: string): Deployment {
    const clients = createTestClients(url, 2);
    const store = new RedisStore(target!, { keyPrefix });
    const live = new LiveHub({ redis: target, redisKeyPrefix: keyPrefix, platform: clients.platform, events: clients.live, logger, now: clock.now, wakeAt: clock.wakeAt });
    const deps = testAppDeps(clients, store, { live, clock: clock.now, pools: clients.pools, responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS } });
    return { app: createApp(deps), clients, store, live, settle: () => deps.inFlight!.settle() };
  }

  beforeAll(async () => {
    origin = await createTestDatabase();
    const seeding = createTestClients(origin.url, 1);
    await seedDemo(seeding.platform);
    acmeId = (await seeding.platform.tenant.findFirstOrThrow({ where: { slug: "acme" } })).id;
    await seeding.close();
    // B's database: a copy of A's (the same tenant, project and deployment ids).
    const admin = new pg.Client({ connectionString: testServerUrl() });
    await admin.connect();
    try {
      await vi.waitFor(
        async () => {
          await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [origin.name]);
          await admin.query(`CREATE DATABASE "${copyName}" TEMPLATE "${origin.name}"`);
        },
        { timeout: 30_000, interval: 100 },
      );
    } finally {
      await admin.end();
    }
    d.a = deployment(origin.url, `${base}a:`);
    d.a2 = deployment(origin.url, `${base}a:`);
    d.b = deployment(databaseUrl(testServerUrl(), copyName), `${base}b:`);
  }, 120_000);

  afterAll(async () => {
    for (const s of open) s.close();
    for (const x of Object.values(d)) {
      await x.live.close().catch(() => {});
      await x.clients.close().catch(() => {});
    }
    // Everything both deployments wrote, under the test's own prefix.
    const sweep = new RedisStore(target!, { keyPrefix: base });
    await sweep.deletePattern("*").catch(() => 0);
    await sweep.close();
    for (const x of Object.values(d)) await x.store.close();
    await dropDatabase(testServerUrl(), copyName).catch(() => {});
    await origin?.drop();
  });

  beforeEach(() => clock.advance(60_000));

  const token = (role: Role, slug = "acme") => signDevToken({ secret: TEST_JWT_SECRET, sub: demoEmail(role, slug), tenant: slug, ttl: "1h" });

  async function gql(x: Deployment, query: string, bearer: string, variables?: Record<string, unknown>) {
    const res = await x.app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = await res.json();
    await x.settle();
    return { body, headers: res.headers };
  }

  const VIEWER = `{ viewer { role } }`;
  const remaining = async (x: Deployment, bearer: string) => {
    const r = await gql(x, VIEWER, bearer);
    expect(r.body.errors).toBeUndefined();
    return Number(r.headers.get("x-ratelimit-remaining"));
  };

  it("the rate-limit budget of a tenant in A is not spent by requests to the same tenant id in B", async () => {
    const owner = await token("OWNER");
    const first = await remaining(d.a, owner);
    const limit = Number((await gql(d.a, VIEWER, owner)).headers.get("x-ratelimit-limit"));
    expect(first).toBe(limit - 1);
    // B's own window counts B's requests only.
    const seenByB: number[] = [];
    for (let i = 0; i < 3; i++) seenByB.push(await remaining(d.b, owner));
    expect(seenByB).toEqual([limit - 1, limit - 2, limit - 3]);
    // A's window: its two requests, plus one of its replica's (same prefix, same budget), plus this one.
    expect(await remaining(d.a2, owner)).toBe(limit - 3);
    expect(await remaining(d.a, owner)).toBe(limit - 4);
  });

  it("a change committed in A reaches A's streams on every replica, never B's", async () => {
    const viewer = await token("VIEWER");
    const DEPLOYMENTS = `subscription { deploymentUpdated { id status } }`;
    const subscribe = async (x: Deployment) => {
      const s = await sseSubscribe((url, init) => x.app.fetch(url, init), "http://localhost/graphql", { query: DEPLOYMENTS }, { authorization: `Bearer ${viewer}` });
      open.push(s);
      expect(s.status).toBe(200);
      return s;
    };
    const [onA2, onB] = [await subscribe(d.a2), await subscribe(d.b)];
    // A deployment both databases have (the copy's ids are A's): B's stream would re-read and serve it.
    const [seeded, other] = await d.a.clients.platform.deployment.findMany({ where: { tenantId: acmeId }, orderBy: { createdAt: "asc" }, take: 2 });
    const gid = (id: string) => Buffer.from(`Deployment:${id}`).toString("base64");
    const UPDATE = `mutation($i: UpdateDeploymentStatusInput!) { updateDeploymentStatus(input: $i) { deployment { id status } } }`;
    const developer = await token("DEVELOPER");
    const inA = await gql(d.a, UPDATE, developer, { i: { id: gid(seeded!.id), status: "CANCELED" } });
    expect(inA.body.errors).toBeUndefined();
    // A's replica hears it through Redis (same prefix, same channel).
    expect((await onA2.nextData()).deploymentUpdated).toEqual({ id: gid(seeded!.id), status: "CANCELED" });
    // B's stream: the first event it gets is B's own change, not A's.
    const inB = await gql(d.b, UPDATE, developer, { i: { id: gid(other!.id), status: "ERROR" } });
    expect(inB.body.errors).toBeUndefined();
    expect((await onB.nextData()).deploymentUpdated).toEqual({ id: gid(other!.id), status: "ERROR" });
    onA2.close();
    onB.close();
  });

  it("clearTenantCache in A deletes A's cached answers, not B's", async () => {
    const viewer = await token("VIEWER");
    const PROJECTS = `{ projects(first: 10) { edges { node { name } } } }`;
    const cached = async (x: Deployment) => (await gql(x, PROJECTS, viewer)).headers.get("x-cache");
    for (const x of [d.a, d.b]) {
      await cached(x);
      expect(await cached(x)).toBe("HIT");
    }
    const admin = await signDevToken({ secret: TEST_JWT_SECRET, sub: DEMO_PLATFORM_ADMIN.subject, ttl: "1h" });
    const clear = await gql(d.a, `mutation($i: ClearTenantCacheInput!) { clearTenantCache(input: $i) { tenant { id } } }`, admin, {
      i: { tenantId: Buffer.from(`Tenant:${acmeId}`).toString("base64") },
    });
    expect(clear.body.errors).toBeUndefined();
    expect(await cached(d.b)).toBe("HIT");
    expect(await cached(d.a)).toBe("MISS");
  });

  it("a tenant's purge pattern in A deletes A's keys only; the keys are under the prefix, in the tenant's slot", async () => {
    const key = tenantKey(acmeId, "probe", "x");
    await d.a.store.set(key, "a", 60);
    await d.b.store.set(key, "b", 60);
    expect(await d.a2.store.get(key)).toBe("a");
    // tenant-purge.service.ts deletes `t:{<id>}:*` so.
    expect(await d.a.store.deletePattern(`t:{${acmeId}}:*`)).toBeGreaterThanOrEqual(1);
    expect(await d.a.store.get(key)).toBeNull();
    expect(await d.b.store.get(key)).toBe("b");
    // In Redis, without ioredis' prefixing: B's key is under B's prefix, and hashes by the tenant's tag.
    const raw = connectRedis(target!);
    try {
      expect(await raw.get(`${base}b:${key}`)).toBe("b");
      expect(await raw.get(key)).toBeNull();
      expect(hashTag(`${base}b:${key}`)).toBe(acmeId);
      if (isCluster(raw)) {
        const node = raw.nodes("master")[0]!;
        expect(await node.cluster("KEYSLOT", `${base}b:${key}`)).toBe(await node.cluster("KEYSLOT", tenantKey(acmeId, "rl", "1")));
      }
    } finally {
      raw.disconnect();
    }
  });
});
