import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo, demoEmail } from "../../src/db/seed.ts";
import { CursorCodec } from "../../src/infra/cursor.ts";
import { InFlight } from "../../src/infra/in-flight.ts";
import { MemoryStore } from "../../src/infra/memory-store.ts";
import { rateLimitWindowKey, RateLimiter } from "../../src/infra/rate-limit.ts";
import { RedisStore, type Store } from "../../src/infra/store.ts";
import { buildContext, type ContextDeps } from "../../src/tenancy/context.ts";
import { hashApiKey } from "../../src/tenancy/credentials.ts";
import { ApiKeyUse } from "../../src/tenancy/last-used.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { testAppDeps, TEST_JWT_SECRET } from "../helpers/app.ts";
import { createTestClients, createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { testRedisTarget } from "../helpers/redis-cluster.ts";

/**
 * docs/performance.md, "Fourth round": a request's context makes at most two
 * Redis round trips on the warm path before PostgreSQL (a token: the user
 * and the tenant's slug, then the tenant's entry, the membership and the
 * rate-limit hit in one script; an API key: the key, then the tenant's
 * entry and the hit). Before, four for a token and three for a key. A round
 * trip is a write on the store's connection (ioredis sends the commands of
 * one turn of the event loop in one write and the context waits for each
 * answer before its next write), counted on a standalone Redis; on a
 * cluster the writes of one turn go to several nodes at once.
 *
 * And the one round trip counts only what buildContext admits: a
 * non-member, a suspended tenant, a key presented with another tenant's
 * X-Tenant-ID spend nothing of the tenant's budget (in Redis and in the
 * in-process store).
 */
const target = testRedisTarget();

describe("the context's Redis round trips and rate-limit budget", () => {
  let db: TestDatabase;
  let clients: ReturnType<typeof createTestClients>;
  let acme: string;
  let keySecret: string;
  const clock = new ManualClock(Date.UTC(2031, 0, 1, 0, 0, 1));
  const stores: Store[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    clients = createTestClients(db.url, 2);
    await seedDemo(clients.platform);
    acme = (await clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
    keySecret = `tgk_${randomBytes(6).toString("hex")}_${randomBytes(32).toString("base64url")}`;
    await clients.platform.apiKey.create({
      data: { tenantId: acme, name: "rt", role: "DEVELOPER", prefix: keySecret.slice(0, 16), secretHash: hashApiKey(keySecret) },
    });
  });
  afterAll(async () => {
    for (const s of stores) await s.close();
    await clients?.close();
    await db?.drop();
  });

  /** ContextDeps as createApp makes them, over `store`, on the test's clock. */
  function contextDeps(store: Store): ContextDeps {
    stores.push(store);
    return {
      ...testAppDeps(clients, store, { clock: clock.now }),
      cursors: new CursorCodec(TEST_JWT_SECRET),
      rateLimiter: new RateLimiter(store, clock.now),
      apiKeyUse: new ApiKeyUse(clients.platform, new InFlight()),
    };
  }
  const token = (sub: string, tenant: string) => signDevToken({ secret: TEST_JWT_SECRET, sub, tenant, ttl: "1h" });
  const request = (headers: Record<string, string>) => new Request("http://localhost/graphql", { method: "POST", headers });
  const context = (deps: ContextDeps, headers: Record<string, string>) => buildContext(deps, request(headers), { requestId: "rt" }, { ip: null });
  const errorCode = (p: Promise<unknown>) => p.then(() => "none", (err: { extensions?: { code?: string } }) => err.extensions?.code);

  describe.runIf(typeof target === "string")("on one Redis, under a key prefix", () => {
    let deps: ContextDeps;
    let store: RedisStore;
    beforeAll(() => {
      store = new RedisStore(target!, { keyPrefix: `test:${randomBytes(6).toString("hex")}:` });
      deps = contextDeps(store);
    });

    /** The writes on the store's connection while `run` runs, once every entry it reads is cached. */
    async function writesOf(run: () => Promise<unknown>): Promise<number> {
      await run();
      // The warm-up's cache writes are sent before this ping, and answered before it.
      await store.ping();
      const stream = (store.redis as Redis & { stream: Socket }).stream;
      const write = stream.write;
      let writes = 0;
      stream.write = function (this: Socket, ...args: Parameters<Socket["write"]>) {
        writes++;
        return write.apply(this, args);
      } as Socket["write"];
      try {
        await run();
      } finally {
        stream.write = write;
      }
      return writes;
    }

    it("a member's token: two round trips (user and slug; tenant, membership and rate limit), counted once", async () => {
      const headers = { authorization: `Bearer ${await token(demoEmail("DEVELOPER", "acme"), "acme")}` };
      const before = (await context(deps, headers)).tenant;
      const remaining: number[] = [];
      const writes = await writesOf(async () => {
        const state: Parameters<typeof buildContext>[2] = { requestId: "rt" };
        const ctx = await buildContext(deps, request(headers), state, { ip: null });
        expect(ctx.tenant?.id).toBe(acme);
        expect(ctx.role).toBe("DEVELOPER");
        remaining.push(state.rateLimit!.remaining);
      });
      expect(remaining[1]).toBe(remaining[0]! - 1);
      expect(before?.id).toBe(acme);
      expect(writes).toBe(2);
    });

    it("an API key: two round trips (the key; tenant and rate limit)", async () => {
      const writes = await writesOf(async () => {
        const ctx = await context(deps, { "x-api-key": keySecret });
        expect(ctx.tenant?.id).toBe(acme);
        expect(ctx.apiKey?.role).toBe("DEVELOPER");
      });
      expect(writes).toBe(2);
    });
  });

  for (const kind of ["memory", "redis"] as const) {
    describe.runIf(kind === "memory" || target)(`refused requests spend no budget (${kind} store)`, () => {
      let deps: ContextDeps;
      let store: Store;
      beforeAll(() => {
        store = kind === "memory" ? new MemoryStore({ now: clock.now }) : new RedisStore(target!, { keyPrefix: `test:${randomBytes(6).toString("hex")}:` });
        deps = contextDeps(store);
      });
      const count = async () => Number((await store.get(rateLimitWindowKey(acme, clock.now()))) ?? 0);

      it("a non-member, a key presented with another tenant's X-Tenant-ID, a suspended tenant: refused, not counted; a member: counted", async () => {
        const outsider = { authorization: `Bearer ${await token(demoEmail("DEVELOPER", "globex"), "acme")}` };
        const member = { authorization: `Bearer ${await token(demoEmail("VIEWER", "acme"), "acme")}` };
        const crossed = { "x-api-key": keySecret, "x-tenant-id": "globex" };
        // Every entry cached first: the refusals below come from the cache's answers.
        expect(await errorCode(context(deps, outsider))).toBe("TENANT_ACCESS_DENIED");
        expect(await errorCode(context(deps, crossed))).toBe("TENANT_ACCESS_DENIED");
        expect(await errorCode(context(deps, member))).toBe("none");
        const counted = await count();
        expect(counted).toBeGreaterThan(0);
        for (let i = 0; i < 3; i++) {
          expect(await errorCode(context(deps, outsider))).toBe("TENANT_ACCESS_DENIED");
          expect(await errorCode(context(deps, crossed))).toBe("TENANT_ACCESS_DENIED");
        }
        expect(await count()).toBe(counted);
        expect(await errorCode(context(deps, member))).toBe("none");
        expect(await errorCode(context(deps, { "x-api-key": keySecret }))).toBe("none");
        expect(await count()).toBe(counted + 2);

        await clients.platform.tenant.update({ where: { id: acme }, data: { status: "SUSPENDED" } });
        try {
          await deps.directory.invalidateTenant(acme, "acme");
          expect(await errorCode(context(deps, member))).toBe("TENANT_SUSPENDED");
          expect(await errorCode(context(deps, member))).toBe("TENANT_SUSPENDED");
          expect(await errorCode(context(deps, { "x-api-key": keySecret }))).toBe("TENANT_SUSPENDED");
          expect(await count()).toBe(counted + 2);
        } finally {
          await clients.platform.tenant.update({ where: { id: acme }, data: { status: "ACTIVE" } });
          await deps.directory.invalidateTenant(acme, "acme");
        }
      });
    });
  }
});
