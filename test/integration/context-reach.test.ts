import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { placementPoolsOf } from "../../src/db/clients.ts";
import { CursorCodec } from "../../src/infra/cursor.ts";
import { InFlight } from "../../src/infra/in-flight.ts";
import { RateLimiter } from "../../src/infra/rate-limit.ts";
import { ApiKeyUse } from "../../src/tenancy/last-used.ts";
import { buildContext, type Context, type ContextDeps } from "../../src/tenancy/context.ts";
import { createTestApp, TEST_JWT_SECRET, testAppDeps, type TestApp } from "../helpers/app.ts";

/**
 * Issue 17 point 2: a resolver cannot reach an unscoped client, not even by
 * a cast. Every object reachable from a request's context through its
 * properties (own, enumerable or not, symbols included; Map and Set entries;
 * getters are not called) is collected, and none may be the app's, the
 * platform's or the live pool's client, the store, the hub, the directory,
 * the placements' pools, nor any Redis, pg pool or Prisma client. The one
 * database handle allowed is the tenant-scoped one (`tenantDb.client`),
 * which the walk does not enter.
 */
function reachable(roots: unknown[], stop: Set<unknown>): Set<object> {
  const seen = new Set<object>();
  const queue = [...roots];
  while (queue.length) {
    const v = queue.pop();
    if ((typeof v !== "object" && typeof v !== "function") || v === null || seen.has(v) || stop.has(v)) continue;
    seen.add(v);
    for (const key of Reflect.ownKeys(v)) {
      const d = Object.getOwnPropertyDescriptor(v, key);
      if (d && "value" in d) queue.push(d.value);
    }
    if (v instanceof Map) for (const [k, x] of v) queue.push(k, x);
    if (v instanceof Set) for (const x of v) queue.push(x);
  }
  return seen;
}

const CLIENT_CLASSES = new Set(["Redis", "Cluster", "Pool", "Client", "PrismaClient", "RedisStore", "LiveHub", "Directory", "PlacementPools", "PlacementAdmin"]);

describe("the request context", () => {
  let t: TestApp;
  let deps: ContextDeps;

  beforeAll(async () => {
    t = await createTestApp();
    const appDeps = testAppDeps(t.clients, t.store, { liveDb: t.clients.live });
    createApp(appDeps); // gives the deps the app's live hub and identity providers
    deps = {
      ...appDeps,
      cursors: new CursorCodec(TEST_JWT_SECRET),
      rateLimiter: new RateLimiter(appDeps.store, appDeps.clock),
      apiKeyUse: new ApiKeyUse(appDeps.platform, new InFlight()),
    };
  });
  afterAll(async () => {
    await (deps?.live as { close?: () => Promise<void> } | undefined)?.close?.();
    await t?.close();
  });

  async function context(token: string): Promise<Context> {
    const request = new Request("http://localhost/graphql", { method: "POST", headers: { authorization: `Bearer ${token}` } });
    return buildContext(deps, request, { requestId: "reach-1" }, { ip: null });
  }

  it("reaches named capabilities and the tenant-scoped handle, never a client, the store, the hub or the directory", async () => {
    const ctx = await context(await t.memberToken("acme", "OWNER"));
    const forbidden = new Map<unknown, string>(
      Object.entries({ app: deps.app, platform: deps.platform, liveDb: deps.liveDb, store: deps.store, live: deps.live, directory: deps.directory, tenantIdps: deps.tenantIdps, placements: placementPoolsOf(deps.app) }).map(([k, v]) => [v, k]),
    );
    expect(forbidden.size).toBe(8);
    await ctx.authorize();
    try {
      // A query in the request's transaction, so the handle has a session.
      await ctx.tenantDb.run((tx) => tx.project.count());
      const seen = reachable([ctx, ctx.tenantDb], new Set([ctx.tenantDb.client]));
      expect([...seen].flatMap((v) => forbidden.get(v) ?? [])).toEqual([]);
      expect([...seen].map((v) => (v as { constructor?: { name?: string } }).constructor?.name).filter((n) => n && CLIENT_CLASSES.has(n))).toEqual([]);
      // Not vacuous: the capabilities are reached.
      expect(seen.has(ctx.directory.membershipsOf)).toBe(true);
      expect(seen.has(ctx.store.get)).toBe(true);
      expect(seen.has(ctx.live!.count)).toBe(true);
      expect(seen.has(ctx.tenantDb.transaction)).toBe(true);
    } finally {
      await ctx.finish();
    }
  });
});
