import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { RequestCounter } from "../../src/infra/request-counter.ts";
import { RedisStore } from "../../src/infra/store.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { startOwnRedis, type OwnRedis } from "../helpers/own-redis.ts";

/**
 * Review F3: a hung Redis (it accepts connections and answers nothing: the
 * test's own redis-server stopped with SIGSTOP) costs a request one command
 * timeout in all, not one per step. The first command to time out tells the
 * store Redis is hung: every command still waiting is given up on with it,
 * and every later one fails at once, unsent, until Redis answers a PING
 * again (src/infra/store.ts). Each step of the requests below takes its
 * degraded mode (docs/degraded-modes.md): authorization from PostgreSQL,
 * the rate limit in this process's window, the response cache bypassed, a
 * window quota's mutation refused, the request count buffered.
 *
 * Elapsed time is the bound's only observable: it is measured by
 * bench/redis-hung.ts (figures in docs/degraded-modes.md), never asserted
 * here. The store's own account says what happened: one hang, commands
 * given up on and refused.
 */
const PROJECTS = `{ projects(first: 20) { totalCount edges { node { name } } } }`;

describe("a hung Redis: one command timeout per request, not one per step", () => {
  let redis: OwnRedis;
  let store: RedisStore;
  let t: TestApp;
  let counter: RequestCounter;
  let acme: string;
  let projectId: string;
  const app = new ManualClock();

  beforeAll(async () => {
    redis = await startOwnRedis();
    store = new RedisStore(redis.url, { commandTimeoutMs: 1000, suspendMs: 100 });
    t = await createTestApp({
      store,
      clock: app.now,
      responseCache: { ttlSeconds: { FREE: 300, PRO: 3600, ENTERPRISE: 0 } },
      requestCounter: (clients) => (counter = new RequestCounter({ db: clients.platform, store, now: app.now })),
    });
    acme = (await tenantIdsBySlug(t)).acme!;
    projectId = (await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: acme } })).id;
  }, 120_000);
  afterAll(async () => {
    redis?.signal("SIGCONT");
    await t?.close();
    await store?.close();
    await redis?.close();
  });

  it("a query, a cached read and mutations are answered, each step in its degraded mode, after one timeout in all", async () => {
    const token = await t.memberToken("acme", "DEVELOPER");
    // Healthy: the entries cached, the read stored in the response cache.
    expect((await t.gql(PROJECTS, { token })).headers.get("x-cache")).toBe("MISS");
    await t.settle();
    const warm = await t.gql(PROJECTS, { token });
    expect(warm.headers.get("x-cache")).toBe("HIT");
    const limit = Number(warm.headers.get("x-ratelimit-limit"));
    expect(Number(warm.headers.get("x-ratelimit-remaining"))).toBe(limit - 2);
    await t.settle();
    expect(counter.bufferedCount).toBe(0);

    redis.signal("SIGSTOP");

    // A query: authorized from PostgreSQL, counted in this process's window (1, not the shared 3).
    const query = await t.gql(`{ tenant { slug } }`, { token });
    expect(query.status).toBe(200);
    expect(query.body.data.tenant.slug).toBe("acme");
    expect(Number(query.headers.get("x-ratelimit-remaining"))).toBe(limit - 1);
    expect(query.headers.get("x-cache")).toBe("BYPASS");

    // The cached read: the cache is bypassed (executed, nothing stored), same answer.
    const cached = await t.gql(PROJECTS, { token });
    expect(cached.status).toBe(200);
    expect(cached.headers.get("x-cache")).toBe("BYPASS");
    expect(cached.body.data).toEqual(warm.body.data);
    expect(Number(cached.headers.get("x-ratelimit-remaining"))).toBe(limit - 2);

    // A mutation with no window quota commits.
    const name = `hung-${Date.now()}`;
    const created = await t.gql(`mutation($i: CreateProjectInput!) { createProject(input: $i) { project { name } } }`, { token, variables: { i: { name } } });
    expect(created.body.errors).toBeUndefined();
    expect(created.body.data.createProject.project.name).toBe(name);
    expect(await t.clients.platform.project.count({ where: { tenantId: acme, name } })).toBe(1);

    // A mutation under a window quota fails closed, having written nothing.
    const before = await t.clients.platform.deployment.count({ where: { project: { tenantId: acme } } });
    const deploy = await t.gql(`mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }`, {
      token,
      variables: { i: { projectId: toGlobalId("Project", projectId), branch: "hung" } },
    });
    expect(deploy.status).toBe(503);
    expect(deploy.body.errors?.[0].extensions).toMatchObject({ code: "SERVICE_UNAVAILABLE", dependency: "redis" });
    expect(await t.clients.platform.deployment.count({ where: { project: { tenantId: acme } } })).toBe(before);

    // Each request's count waits in the process (never failing it), for the next flush that finds Redis.
    expect(counter.bufferedCount).toBe(4);
    // One command waited for its timeout: the store found Redis hung once,
    // gave up on what waited with it, and sent nothing more (before: each
    // step's command waited for a timeout of its own).
    expect(store.stats.hangs).toBe(1);
    expect(store.stats.givenUp).toBeGreaterThanOrEqual(1);
    // The cached read's lookup, the rate-limit hits, the quota and the counts, at least.
    expect(store.stats.refused).toBeGreaterThanOrEqual(8);

    // Redis back: the commands given up on run now, none of them twice (the
    // window holds the two healthy requests and at most one hit of each hung one).
    redis.signal("SIGCONT");
    // The store's own PING finds it answering: commands go through again.
    await vi.waitFor(async () => expect(await store.ping()).toBe(true), { timeout: 20_000, interval: 50 });
    const keys = await redis.client.keys(`*{${acme}}:rl:*`);
    expect(keys).toHaveLength(1);
    const shared = Number(await redis.client.get(keys[0]!));
    expect(shared).toBeGreaterThanOrEqual(2);
    expect(shared).toBeLessThanOrEqual(2 + 4);
    // And the response cache is used again (a MISS: the new project changed the tenant's generation), then answers.
    expect((await t.gql(PROJECTS, { token })).headers.get("x-cache")).toBe("MISS");
    await t.settle();
    expect((await t.gql(PROJECTS, { token })).headers.get("x-cache")).toBe("HIT");
    expect(store.stats.hangs).toBe(1);
  });
});
