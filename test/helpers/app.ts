import { createApp, type App, type AppDeps } from "../../src/app.ts";
import { DEMO_PLATFORM_ADMIN, demoEmail, seedDemo } from "../../src/db/seed.ts";
import type { Plan, Role } from "../../src/generated/prisma/enums.ts";
import { createLogger, type Logger } from "../../src/infra/logger.ts";
import { InFlight } from "../../src/infra/in-flight.ts";
import type { ResponseCacheOptions } from "../../src/infra/response-cache.ts";
import type { Store } from "../../src/infra/store.ts";
import type { RequestCounter } from "../../src/infra/request-counter.ts";
import { createTokenVerifier } from "../../src/tenancy/credentials.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { createDatabases, type Databases, type TimeSharesOption } from "../../src/db/clients.ts";
import type { PoolSizes } from "../../src/config/pool-sizes.ts";
import { createTestClients, createTestDatabase, testDatabaseUrls, type TestDatabase } from "./db.ts";
import { spreadDemoTenants, spreadPlacements } from "./placements.ts";
import { isolatedStore } from "./isolated-store.ts";
import type { SseStreams } from "../../src/http/sse-streams.ts";

/**
 * The whole app in-process over a fresh test database seeded with the demo
 * tenants (acme PRO, globex FREE, wayne ENTERPRISE), against the real Redis
 * when REDIS_URL is set, else the in-process store.
 */
export const TEST_JWT_SECRET = "test-secret-0123456789abcdef0123456789abcdef";

/**
 * TEST_TENANT_WALL=rls runs every test app without wall 1, the Prisma tenant
 * scope (ContextDeps.tenantScope = false): the isolation battery then shows
 * that row-level security alone keeps tenants apart (`npm run test:rls-only`).
 */
export function tenantScopeFromEnv(): { tenantScope?: false } {
  const wall = process.env.TEST_TENANT_WALL;
  if (wall === undefined || wall === "" || wall === "both") return {};
  if (wall === "rls") return { tenantScope: false };
  throw new Error(`TEST_TENANT_WALL=${wall}: expected "rls" or "both"`);
}

/**
 * The AppDeps of a test app over `clients` and `store` (the test JWT secret,
 * a silent logger, BASE_DOMAIN localhost); `overrides` replace any of them,
 * `overrides.config` merges into the config.
 */
export function testAppDeps(
  clients: Pick<Databases, "app" | "platform"> & Partial<Pick<Databases, "live">>,
  store: Store,
  overrides: Omit<Partial<AppDeps>, "config"> & { config?: Partial<AppDeps["config"]> } = {},
): AppDeps {
  const { config, ...rest } = overrides;
  return {
    app: clients.app,
    platform: clients.platform,
    liveDb: clients.live,
    store,
    directory: new Directory(clients.platform, store, { now: overrides.clock }),
    verifyToken: createTokenVerifier({ jwtSecret: TEST_JWT_SECRET, jwtIssuer: undefined, jwtAudience: undefined, jwksUrl: undefined }),
    baseDomain: "localhost",
    config: { graphiql: true, introspection: true, maxBodyBytes: 1_048_576, jwtSecret: TEST_JWT_SECRET, production: false, ...config },
    logger: createLogger("silent"),
    probes: {},
    inFlight: new InFlight(),
    ...tenantScopeFromEnv(),
    ...rest,
  };
}

/** Every tenant's id by slug (the demo tenants and any a test made). */
export async function tenantIdsBySlug(t: Pick<TestApp, "clients">): Promise<Record<string, string>> {
  const ids: Record<string, string> = {};
  for (const tn of await t.clients.platform.tenant.findMany({ select: { id: true, slug: true } })) ids[tn.slug] = tn.id;
  return ids;
}

export interface TestApp {
  app: App;
  db: TestDatabase;
  clients: Databases;
  store: Store;
  /** A signed token for `sub` (tid claim = tenant when given). */
  token(sub: string, tenant?: string, ttl?: string): Promise<string>;
  /** Token of the demo member with `role` in tenant `slug` (tid claim set). */
  memberToken(slug: string, role: Role): Promise<string>;
  adminToken(): Promise<string>;
  /** Waits for the app's fire-and-forget writes started so far (last uses, response-cache entries). */
  settle(): Promise<void>;
  /** POST /graphql; returns status, headers and parsed JSON body. */
  gql<T = any>(
    query: string,
    opts?: { variables?: Record<string, unknown>; token?: string; headers?: Record<string, string> },
  ): Promise<{ status: number; headers: Headers; body: { data?: T; errors?: any[] } }>;
  close(): Promise<void>;
}

export async function createTestApp(
  options: { seed?: boolean; store?: Store; metricsToken?: string; logger?: Logger; pools?: Partial<PoolSizes>; responseCache?: ResponseCacheOptions; clock?: () => number; timeShares?: TimeSharesOption; tenantMax?: Partial<Record<Plan, number | null>>; requestCounter?: (clients: Databases) => RequestCounter; sseStreams?: SseStreams } = {},
): Promise<TestApp> {
  const db = await createTestDatabase();
  const clients =
    options.pools || options.timeShares
      ? createDatabases({ ...testDatabaseUrls(db.url), pools: options.pools, timeShares: options.timeShares, tenantMax: options.tenantMax })
      : createTestClients(db.url);
  if (options.seed !== false) await seedDemo(clients.platform);
  // TEST_PLACEMENTS=spread: globex in a schema, wayne in a database of their own (test/helpers/placements.ts).
  const dropPlacements = options.seed !== false && spreadPlacements() ? await spreadDemoTenants(clients) : undefined;
  // Every test app gets a store of its own: the real Redis under a random
  // prefix (test databases reuse the demo slugs with fresh ids), or memory.
  const store = options.store ?? isolatedStore();
  const deps = testAppDeps(clients, store, {
    config: { metricsToken: options.metricsToken },
    logger: options.logger ?? createLogger("silent"),
    pools: clients.pools,
    ...(options.responseCache ? { responseCache: options.responseCache } : {}),
    clock: options.clock,
    ...(options.requestCounter ? { requestCounter: options.requestCounter(clients) } : {}),
    sseStreams: options.sseStreams,
    probes: {
      postgres: async () => (await clients.appPools.PRO.query("SELECT 1")).rowCount === 1,
      store: () => store.ping(),
    },
  });
  const app = createApp(deps);
  const token = (sub: string, tenant?: string, ttl = "1h") => signDevToken({ secret: TEST_JWT_SECRET, sub, tenant, ttl });
  return {
    app,
    db,
    clients,
    store,
    token,
    memberToken: (slug, role) => token(demoEmail(role, slug), slug),
    adminToken: () => token(DEMO_PLATFORM_ADMIN.subject),
    settle: () => deps.inFlight!.settle(),
    async gql(query, opts = {}) {
      const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      const res = await app.fetch("http://localhost/graphql", {
        method: "POST",
        headers,
        body: JSON.stringify({ query, variables: opts.variables }),
      });
      const text = await res.text();
      let body: any;
      try {
        body = JSON.parse(text);
      } catch {
        body = { raw: text };
      }
      return { status: res.status, headers: res.headers, body };
    },
    async close() {
      await dropPlacements?.();
      await clients.close();
      if (!options.store) await store.close();
      await db.drop();
    },
  };
}
