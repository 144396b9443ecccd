import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import pg from "pg";
import { createApp, type App } from "../../src/app.ts";
import { DEFAULT_CACHE_TTL_SECONDS } from "../../src/infra/response-cache.ts";
import { demoEmail } from "../../src/db/seed.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import type { Store } from "../../src/infra/store.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { createTestApp, testAppDeps, TEST_JWT_SECRET, type TestApp } from "../helpers/app.ts";
import { createTestClients, databaseUrl, testServerUrl, dropDatabase } from "../helpers/db.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * Two deployments sharing one Redis, B's main database a copy of A's (a
 * staging restored from production's dump): the same tenant ids and cache
 * generations. The directory's entries already name their database; a
 * response cached by A must be a miss for B too (its key names the main
 * database: src/http/use-response-cache.ts). Before, B's caller read A's
 * cached projects (review 15:02, F1).
 */
describe("a copy of the main database sharing Redis: response cache", () => {
  let a: TestApp;
  let shared: Store;
  let bApp: App;
  let settleB: () => Promise<void>;
  let bClients: ReturnType<typeof createTestClients>;
  const bName = `tg_probe_clone_${process.pid}_${Date.now()}`;

  beforeAll(async () => {
    shared = isolatedStore();
    a = await createTestApp({ store: shared, responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS } });
    const admin = new pg.Client({ connectionString: testServerUrl() });
    await admin.connect();
    // A template must have no connection: A's pools reconnect meanwhile, so end them until the copy is made.
    await vi.waitFor(
      async () => {
        await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [a.db.name]);
        await admin.query(`CREATE DATABASE "${bName}" TEMPLATE "${a.db.name}"`);
      },
      { timeout: 30_000, interval: 100 },
    );
    await admin.end();
    bClients = createTestClients(databaseUrl(testServerUrl(), bName));
    const bDeps = testAppDeps(bClients, shared, { logger: createLogger("silent"), pools: bClients.pools, responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS } });
    bApp = createApp(bDeps);
    settleB = () => bDeps.inFlight!.settle();
  }, 120_000);
  afterAll(async () => {
    await bClients?.close();
    await dropDatabase(testServerUrl(), bName).catch(() => {});
    await a?.close();
    await shared?.close();
  });

  async function gql(app: App, query: string, token: string, variables?: unknown) {
    for (let i = 0; ; i++) {
      const res = await app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ query, variables }),
      });
      const body = await res.json();
      // A's pooled connections were terminated for the clone: retry a connection error once or twice.
      if (body.errors && i < 3 && /INTERNAL|UNAVAILABLE/.test(JSON.stringify(body.errors))) continue;
      await (app === bApp ? settleB() : a.settle());
      return { body, cache: res.headers.get("x-cache") };
    }
  }

  it("B's caller is never served A's cached answer", async () => {
    const token = await signDevToken({ secret: TEST_JWT_SECRET, sub: demoEmail("OWNER", "acme"), tenant: "acme", ttl: "1h" });
    const CREATE = `mutation($input: CreateProjectInput!) { createProject(input: $input) { project { name } } }`;
    const PROJECTS = `{ projects(first: 50) { edges { node { name } } } }`;
    const ma = await gql(a.app, CREATE, token, { input: { name: "written-in-A", slug: "written-in-a" } });
    expect(ma.body.errors).toBeUndefined();
    const mb = await gql(bApp, CREATE, token, { input: { name: "written-in-B", slug: "written-in-b" } });
    expect(mb.body.errors).toBeUndefined();
    const ra = await gql(a.app, PROJECTS, token);
    const namesA = ra.body.data.projects.edges.map((e: any) => e.node.name);
    const rb = await gql(bApp, PROJECTS, token);
    const namesB = rb.body.data.projects.edges.map((e: any) => e.node.name);
    expect(namesA).toContain("written-in-A");
    expect(rb.cache).toBe("MISS");
    expect(namesB).toContain("written-in-B");
    expect(namesB).not.toContain("written-in-A");
  });
});
