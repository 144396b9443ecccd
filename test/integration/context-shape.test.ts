import v8 from "node:v8";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo, demoEmail } from "../../src/db/seed.ts";
import { CursorCodec } from "../../src/infra/cursor.ts";
import { InFlight } from "../../src/infra/in-flight.ts";
import { MemoryStore } from "../../src/infra/memory-store.ts";
import { RateLimiter } from "../../src/infra/rate-limit.ts";
import { buildContext, renewScope, type Context, type ContextDeps } from "../../src/tenancy/context.ts";
import { ApiKeyUse } from "../../src/tenancy/last-used.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { testAppDeps, TEST_JWT_SECRET } from "../helpers/app.ts";
import { createTestClients, createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * The context object keeps V8's fast properties (docs/live-updates.md,
 * "Ninth round, second part"): built onto Yoga's initial context with one named store
 * per field, and with the request scope's accessors defined once, with the
 * same getters for every context, not again at each renewal (a
 * subscription renews its scope for every event). An Object.assign of the
 * fields, or accessors made anew per context or redefined, turns it into a
 * dictionary: a hash lookup for every ctx read of every resolver, and
 * 1.6 KB instead of ~0.4 KB per context, which each open stream keeps.
 */
v8.setFlagsFromString("--allow-natives-syntax");
const hasFastProperties = new Function("o", "return %HasFastProperties(o)") as (o: object) => boolean;

describe("the request context's shape", () => {
  let db: TestDatabase;
  let clients: ReturnType<typeof createTestClients>;
  let deps: ContextDeps;

  beforeAll(async () => {
    db = await createTestDatabase();
    clients = createTestClients(db.url, 2);
    await seedDemo(clients.platform);
    const store = new MemoryStore();
    deps = {
      ...testAppDeps(clients, store),
      cursors: new CursorCodec(TEST_JWT_SECRET),
      rateLimiter: new RateLimiter(store),
      apiKeyUse: new ApiKeyUse(clients.platform, new InFlight()),
    };
  });
  afterAll(async () => {
    await clients?.close();
    await db?.drop();
  });

  /** A member's context built onto an object shaped like Yoga's initial context. */
  async function memberContext(): Promise<Context> {
    const request = new Request("http://localhost/graphql", {
      method: "POST",
      headers: { authorization: `Bearer ${await signDevToken({ secret: TEST_JWT_SECRET, sub: demoEmail("DEVELOPER", "acme"), tenant: "acme", ttl: "1h" })}` },
    });
    const initial = { request, params: { query: "{ viewer { id } }" }, req: {}, res: {}, waitUntil: () => {} };
    return buildContext(deps, request, { requestId: "shape" }, { ip: null }, initial);
  }

  it("stays in fast mode when built, and through a subscription's renewals", async () => {
    const canary: Record<string, number> = { a: 1, b: 2 };
    delete canary.a;
    // The check itself can fail: an object that went to dictionary mode.
    expect(hasFastProperties({ a: 1 })).toBe(true);
    expect(hasFastProperties(canary)).toBe(false);

    const ctx = await memberContext();
    expect(ctx.tenant?.slug).toBe("acme");
    expect(hasFastProperties(ctx)).toBe(true);
    for (let event = 0; event < 3; event++) {
      renewScope(ctx);
      expect(hasFastProperties(ctx)).toBe(true);
    }
    // The scope still works after the renewals: a fresh handle each time.
    const first = ctx.tenantDb;
    expect(ctx.tenantDb).toBe(first);
    renewScope(ctx);
    expect(ctx.tenantDb).not.toBe(first);
    expect(ctx.tenantDb.tenantId).toBe(ctx.tenant!.id);
  });

  it("defines the scope's accessors once, with the same getters for every context", async () => {
    const [a, b] = [await memberContext(), await memberContext()];
    const getter = (ctx: object, name: string) => Object.getOwnPropertyDescriptor(ctx, name)?.get;
    for (const name of ["tenantDb", "db"]) {
      expect(getter(a, name)).toBeTypeOf("function");
      expect(getter(a, name)).toBe(getter(b, name));
      renewScope(a);
      expect(getter(a, name)).toBe(getter(b, name));
      expect(Object.keys(a)).not.toContain(name);
    }
  });
});
