import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rateLimitWindowKey } from "../../src/infra/rate-limit.ts";
import { tenantKey } from "../../src/infra/store.ts";
import type { Context } from "../../src/tenancy/context.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";

/**
 * Review-1745 F2: the request's capabilities (ctx.store, ctx.live,
 * ctx.directory) are bound to the request's tenant. A resolver-level probe
 * on the real Yoga context of an acme VIEWER cannot read or touch globex's
 * rate-limit window or directory record, and has no way to delete keys by
 * pattern.
 */
describe("request capabilities are bound to the request's tenant", () => {
  let t: TestApp;
  let ids: Record<string, string>;

  beforeAll(async () => {
    t = await createTestApp();
    ids = await tenantIdsBySlug(t);
  });
  afterAll(async () => {
    await t?.close();
  });

  /** The context a resolver of an acme VIEWER's request gets, built by Yoga's own context factory. */
  async function yogaContext(token: string): Promise<Context> {
    const request = new Request("http://localhost/graphql", { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } });
    const app = t.app as unknown as { getEnveloped(init: object): { contextFactory(): Promise<unknown> } };
    const ctx = (await app.getEnveloped({ request, params: { query: "{ __typename }" } }).contextFactory()) as Context;
    await ctx.authorize();
    return ctx;
  }

  it("an acme VIEWER cannot read or touch globex's rate-limit window", async () => {
    await t.gql(`{ __typename }`, { token: await t.memberToken("globex", "VIEWER") });
    const now = Date.now();
    const globexWindow = rateLimitWindowKey(ids.globex!, now);
    const before = await t.store.get(globexWindow);
    expect(before).not.toBeNull();
    const ctx = await yogaContext(await t.memberToken("acme", "VIEWER"));
    const store = ctx.store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    try {
      // A key built from another tenant's id is refused; a raw key string is not a key builder.
      await expect(store.get!((_own: string) => globexWindow)).rejects.toThrow(/outside the request's tenant/);
      await expect(store.hit!((_own: string) => globexWindow, 60_000, 1000)).rejects.toThrow(/outside the request's tenant/);
      await expect(Promise.resolve().then(() => store.get!(globexWindow))).rejects.toThrow();
      expect(store.deletePattern).toBeUndefined();
      // Its own window is readable: the key is built from acme's id by the capability.
      expect(await store.get!((tenantId: string) => rateLimitWindowKey(tenantId, now))).not.toBeNull();
    } finally {
      await ctx.finish();
    }
    expect(await t.store.get(globexWindow)).toBe(before);
    expect(await t.store.get(tenantKey(ids.globex!, "rl", "x"))).toBeNull();
  });

  it("an acme VIEWER cannot read globex's directory record, nor invalidate its entries, nor count its streams", async () => {
    const ctx = await yogaContext(await t.memberToken("acme", "VIEWER"));
    try {
      expect(await ctx.directory.tenant(ids.globex!)).toBeNull();
      expect(await ctx.directory.tenant("globex")).toBeNull();
      expect((await ctx.directory.tenant(ids.acme!))?.slug).toBe("acme");
      await expect(ctx.directory.invalidateTenant(ids.globex!, "globex")).rejects.toThrow(/outside the request's tenant/);
      await expect(ctx.directory.invalidateMembership(ids.globex!, ctx.user!.id)).rejects.toThrow(/outside the request's tenant/);
      const live = ctx.live as unknown as { count: (...args: unknown[]) => Promise<number>; publish?: unknown };
      expect(live.publish).toBeUndefined();
      // count() counts the request's tenant, whatever it is handed.
      expect(await live.count(ids.globex!)).toBe(await live.count());
    } finally {
      await ctx.finish();
    }
  });
});
