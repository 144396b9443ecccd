import pg from "pg";
import { Cluster, Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PlacementAdmin } from "../../src/db/placement-admin.ts";
import { PlacementPools } from "../../src/db/placement-pools.ts";
import { MemoryStore } from "../../src/infra/memory-store.ts";
import { RedisStore } from "../../src/infra/store.ts";
import { LiveHub } from "../../src/modules/live/hub.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import type { Context } from "../../src/tenancy/context.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

/**
 * Issue 17 point 2: a resolver cannot reach an unscoped client, not even by
 * a cast. The context is the one Yoga builds for a request (its own
 * `contextFactory`, so `request`, `params` and whatever the plugins add are
 * walked too). Every object reachable from it through its properties (own,
 * enumerable or not, symbols included), its prototypes, and Map and Set
 * entries is collected (getters are not called), and none may be a client,
 * recognised by what it is rather than by a class name (Prisma 7's client
 * class is minified): an object with Prisma's `$queryRawUnsafe` (a client or
 * a transaction client), a pg Pool or Client, an ioredis client, the store,
 * the hub, the directory, the placements' pools or admin.
 *
 * The one database handle allowed is the tenant-scoped client
 * (`ctx.tenantDb.client`, what `ctx.db` answers), which the walk does not
 * enter: it is a Prisma client extended by the tenant scope, and Prisma
 * keeps the un-extended client and the request's connection behind it
 * (`_originalClient`, `_appliedParent`): docs/architecture.md, "What a
 * resolver can reach", says why that is accepted and RLS is the wall there.
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
    queue.push(Object.getPrototypeOf(v));
    if (v instanceof Map) for (const [k, x] of v) queue.push(k, x);
    if (v instanceof Set) for (const x of v) queue.push(x);
  }
  return seen;
}

/** What an object is, if it is a client or holds one's powers; null otherwise. */
function clientKind(v: object): string | null {
  if (v instanceof pg.Pool) return "pg.Pool";
  if (v instanceof pg.Client) return "pg.Client";
  if (v instanceof Redis) return "ioredis Redis";
  if (v instanceof Cluster) return "ioredis Cluster";
  if (v instanceof RedisStore || v instanceof MemoryStore) return "store";
  if (v instanceof LiveHub) return "live hub";
  if (v instanceof Directory) return "directory";
  if (v instanceof PlacementPools) return "placement pools";
  if (v instanceof PlacementAdmin) return "placement admin";
  // Prisma, by shape (own or inherited): a client, an extended one or a transaction client.
  try {
    if (typeof (v as { $queryRawUnsafe?: unknown }).$queryRawUnsafe === "function") return "Prisma client";
    // Any Store (Redis, memory, a test's prefixed one), by shape.
    if (typeof (v as { deletePattern?: unknown }).deletePattern === "function") return "store";
  } catch {
    // a revoked proxy or a throwing getter: not a client
  }
  return null;
}

describe("the request context", () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  /** The context Yoga builds for a POST /graphql of `token`'s caller. */
  async function yogaContext(token: string): Promise<Context> {
    const request = new Request("http://localhost/graphql", { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } });
    const app = t.app as unknown as { getEnveloped(init: object): { contextFactory(): Promise<unknown> } };
    return (await app.getEnveloped({ request, params: { query: "{ __typename }" } }).contextFactory()) as Context;
  }

  it("the checks see what they look for (not vacuous)", () => {
    expect(clientKind(t.clients.app)).toBe("Prisma client");
    expect(clientKind(t.clients.platform)).toBe("Prisma client");
    expect(clientKind(t.store)).toBe("store");
    expect(t.clients.app.constructor.name).not.toBe("PrismaClient"); // why a class-name check could never match
    const seen = reachable([{ nested: { client: t.clients.platform } }], new Set());
    expect([...seen].flatMap((v) => clientKind(v) ?? [])).toContain("Prisma client");
    // Through a prototype only.
    const viaProto = Object.create({ hidden: t.clients.appPools.PRO });
    expect([...reachable([viaProto], new Set())].flatMap((v) => clientKind(v) ?? [])).toContain("pg.Pool");
  });

  for (const who of ["OWNER", "VIEWER", "admin"] as const) {
    it(`a ${who}'s context reaches named capabilities and the tenant-scoped handle, never a client, the store, the hub or the directory`, async () => {
      const ctx = await yogaContext(who === "admin" ? await t.adminToken() : await t.memberToken("acme", who));
      await ctx.authorize();
      try {
        const stop = new Set<unknown>();
        if (ctx.tenant) {
          // A query in the request's transaction, so the handle has a session.
          await ctx.tenantDb.run((tx) => tx.project.count());
          stop.add(ctx.tenantDb.client);
        }
        const seen = reachable([ctx, ...(ctx.tenant ? [ctx.tenantDb] : [])], stop);
        expect([...seen].flatMap((v) => clientKind(v) ?? [])).toEqual([]);
        // Not vacuous: the capabilities are reached.
        expect(seen.has(ctx.directory.membershipsOf)).toBe(true);
        expect(seen.has(ctx.store.get)).toBe(true);
        expect(seen.has(ctx.live!.count)).toBe(true);
        expect(seen.has((ctx as unknown as { request: object }).request)).toBe(true);
        if (ctx.tenant) expect(seen.has(ctx.tenantDb.transaction)).toBe(true);
      } finally {
        await ctx.finish();
      }
    });
  }
});
