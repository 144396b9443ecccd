import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CACHE_TTL_SECONDS } from "../../src/infra/response-cache.ts";
import { RedisStore } from "../../src/infra/store.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { startOwnRedis, type OwnRedis } from "../helpers/own-redis.ts";
import { type ServerProcess, startReplicaPair } from "../helpers/server-process.ts";
import { eventually } from "../helpers/eventually.ts";

/**
 * Issue 14, the faults: the response cache with its Redis down (bypassed,
 * never answered from memory), Redis restarted from a dump holding entries
 * older than a change (never addressed again), and two server processes
 * sharing one database and one Redis (a change through one makes the
 * other's next read fresh).
 */

const PROJECTS = `{ projects(first: 50) { totalCount edges { node { name } } } }`;
const CREATE_PROJECT = `mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }`;
const names = (body: any): string[] => body.data.projects.edges.map((e: any) => e.node.name);


describe("response cache with its Redis down or restarted from an old dump", () => {
  let redis: OwnRedis;
  let t: TestApp;
  let owner: string;

  beforeAll(async () => {
    redis = await startOwnRedis();
    t = await createTestApp({ store: new RedisStore(redis.url), responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS } });
    owner = await t.memberToken("acme", "OWNER");
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
    await redis?.close();
  });

  const read = async () => {
    const res = await t.gql(PROJECTS, { token: owner });
    await t.settle();
    expect(res.body.errors).toBeUndefined();
    return { cache: res.headers.get("x-cache"), body: res.body };
  };

  it("Redis down: BYPASS with correct answers, also after a change; back up from a dump with stale entries: MISS, fresh", async () => {
    const acme = (await tenantIdsBySlug(t)).acme!;
    const first = await read();
    expect(first.cache).toBe("MISS");
    expect((await read()).cache).toBe("HIT");
    await redis.save();

    await redis.kill();
    const down = await read();
    expect(down.cache).toBe("BYPASS");
    expect(down.body).toEqual(first.body);
    const created = await t.gql(CREATE_PROJECT, { token: owner, variables: { i: { name: "Made while Redis was down" } } });
    expect(created.body.errors).toBeUndefined();
    const afterChange = await read();
    expect(afterChange.cache).toBe("BYPASS");
    expect(names(afterChange.body)).toContain("Made while Redis was down");

    // The dump holds the entry cached before the change.
    await redis.start();
    await eventually("the app's Redis connection", () => t.store.ping());
    expect((await redis.client.keys(`t:{${acme}}:rc:*`)).length).toBe(1);
    const back = await read();
    expect(back.cache).toBe("MISS");
    expect(back.body).toEqual(afterChange.body);
    expect((await read()).cache).toBe("HIT");
  });
});

describe("two server processes: a change through one, the other's next read is fresh", () => {
  const JWT_SECRET = "response-cache-secret-0123456789abcdef01";
  let redis: OwnRedis;
  let db: TestDatabase;
  let A: ServerProcess;
  let B: ServerProcess;

  beforeAll(async () => {
    redis = await startOwnRedis();
    db = await createTestDatabase();
    const env = { DATABASE_URL: db.url, REDIS_URL: redis.url, MIGRATE_ON_START: "true", SEED_ON_START: "true", JWT_SECRET, LOG_LEVEL: "silent" };
    [A, B] = await startReplicaPair(env);
  }, 180_000);
  afterAll(async () => {
    await Promise.allSettled([A?.stop(), B?.stop()]);
    await redis?.close();
    await db?.drop();
  });

  const gql = async (server: ServerProcess, query: string, token: string, variables?: Record<string, unknown>) => {
    const res = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
    return { cache: res.headers.get("x-cache"), body: (await res.json()) as { data?: any; errors?: any[] } };
  };

  it("B caches, A creates a project, B's next read is a MISS with it", async () => {
    const owner = await signDevToken({ secret: JWT_SECRET, sub: "owner@acme.test", tenant: "acme", ttl: "10m" });
    const viewer = await signDevToken({ secret: JWT_SECRET, sub: "viewer@acme.test", tenant: "acme", ttl: "10m" });
    const first = await gql(B, PROJECTS, viewer);
    expect(first.cache).toBe("MISS");
    // B's write is not waited for by its response: wait until B answers from the cache.
    await eventually("B's cached entry", async () => (await gql(B, PROJECTS, viewer)).cache === "HIT");
    // A shares the entry (same tenant, role, generation).
    expect((await gql(A, PROJECTS, viewer)).cache).toBe("HIT");

    const created = await gql(A, CREATE_PROJECT, owner, { i: { name: "Made through A" } });
    expect(created.body.errors).toBeUndefined();
    const onB = await gql(B, PROJECTS, viewer);
    expect(onB.cache).toBe("MISS");
    expect(names(onB.body)).toContain("Made through A");
    expect(onB.body.data.projects.totalCount).toBe(first.body.data.projects.totalCount + 1);
    const onA = await gql(A, PROJECTS, viewer);
    expect(onA.cache).not.toBe("BYPASS");
    expect(onA.body).toEqual(onB.body);
  });
});
