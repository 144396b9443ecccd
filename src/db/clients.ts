import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../generated/prisma/client.ts";
import type { Plan } from "../generated/prisma/enums.ts";
import { DEFAULT_POOL_SIZES, type PoolSizes } from "../config/pool-sizes.ts";
import { RequestSlots, registerRequestSlots } from "./request-slots.ts";
import { DEFAULT_SERVER, PlacementAdmin, withDatabase, type PlacementRef } from "./placement-admin.ts";
import { PlacementPools, type PlacementPoolsOptions } from "./placement-pools.ts";
import { realClock, type ShareClock } from "./time-share.ts";
import { allowPreparedStatements } from "./prepared-statements.ts";
import { TierPool } from "./tier-pool.ts";

/**
 * The database handles of one process. None is the table owner:
 *   - the tier clients run as tenantgraph_app: row-level security shows them
 *     one tenant; only the tenant-scoped wrappers in src/tenancy use them.
 *     One pool per plan (POOL_SIZE_FREE, _PRO, _ENTERPRISE), so one tier's
 *     slow queries hold only that tier's connections (docs/request-path.md,
 *     "Tier pools");
 *   - `live` runs as tenantgraph_app too, on a small pool of its own: the
 *     reads that turn live events into nodes (src/modules/live), so event
 *     delivery never waits for a request's connection nor takes one;
 *   - `platform` runs as tenantgraph_platform: the explicit cross-tenant
 *     path (platform operations, @crossTenant, the directory's credential
 *     and tenant resolution), on its own small pool.
 * A tier pool, main or placed, serves its waiting requests round-robin by
 * tenant (src/db/lane-queue.ts), optionally caps the connections one tenant holds
 * (POOL_TENANT_MAX_<PLAN>), and, for a plan given a time share
 * (POOL_TIME_SHARE_<PLAN>), is bounded by connection time too
 * (src/db/time-share.ts, src/db/tier-pool.ts).
 * Each connects with its own URL when one is given (managed databases), else
 * with the migrator's URL and `SET ROLE` at connection start.
 */
export const APP_ROLE = "tenantgraph_app";
export const PLATFORM_ROLE = "tenantgraph_platform";

export const PLANS: readonly Plan[] = ["FREE", "PRO", "ENTERPRISE"];

export interface Databases {
  /**
   * The request path's handle. TenantDb serves a tenant from its plan's tier
   * (`tierClient(app, plan)`); `app` itself is the PRO tier's client.
   */
  app: PrismaClient;
  platform: PrismaClient;
  /** Reads of live events (src/modules/live), on the live pool. */
  live: PrismaClient;
  /** The tier pools, by plan. */
  appPools: Record<Plan, pg.Pool>;
  platformPool: pg.Pool;
  livePool: pg.Pool;
  /** Every pool, by a name for metrics (app_free, app_pro, app_enterprise, live, platform). */
  pools: Record<string, pg.Pool>;
  /** The SCHEMA and DATABASE placements' pools and clients, and their owner-side admin (docs/placement.md). */
  placements: PlacementPools;
  close(): Promise<void>;
}

/** A plan's time share as createDatabases takes it; `maxWaitMs`: the plan's statement timeout (0: the connection timeout, 10 s). */
export interface TierTimeShare {
  share: number;
  maxWaitMs?: number;
}

export interface TimeSharesOption {
  /** By plan; a plan not named has no bound but its pool size. */
  plans: Partial<Record<Plan, TierTimeShare | null>>;
  windowMs: number;
  /** The app's clock (tests inject a manual one); default Date.now with real timers. */
  clock?: ShareClock;
}

const CONNECTION_TIMEOUT_MS = 10_000;

/** What a tier pool's gate takes (src/db/time-share.ts): its plan's share and cap, if any. */
export interface TierGateOption {
  share?: TierTimeShare;
  tenantMax?: number;
  windowMs: number;
  clock: ShareClock;
}

/** A pool; with `gate`, a tier pool (its waiters served by tenant, src/db/tier-pool.ts). */
export function createPool(url: string, role: string | undefined, max: number, gate?: TierGateOption, prepared = false): pg.Pool {
  const config = {
    connectionString: url,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: CONNECTION_TIMEOUT_MS,
    // A busy pool never idles a connection out: replaced after an hour all
    // the same, so what a backend accumulates (prepared statements, caches)
    // does not grow for the life of the process.
    maxLifetimeSeconds: 3600,
    // A startup parameter, not a statement: no round-trip, and set before
    // the pool hands the connection to anyone.
    options: role ? `-c role=${role}` : undefined,
  };
  // A share or a cap at least the pool's size never binds: none then.
  const share = gate?.share && gate.share.share < max ? gate.share : undefined;
  const pool = gate
    ? new TierPool(config, {
        share: share?.share,
        tenantMax: gate.tenantMax !== undefined && gate.tenantMax < max ? gate.tenantMax : undefined,
        windowMs: gate.windowMs,
        // A wait for the share is bounded by the plan's statement timeout; one for a connection alone by pg's, as in pg's own queue.
        maxWaitMs: (share && share.maxWaitMs) || CONNECTION_TIMEOUT_MS,
        clock: gate.clock,
      })
    : new pg.Pool(config);
  // An idle connection the server closes (a restart, an admin, the embedded
  // PostgreSQL stopping at shutdown) is dropped by the pool; without a
  // listener, pg would raise it as an uncaught 'error' and kill the process.
  pool.on("error", () => {});
  // The same for a connection checked out (a request transaction, a Prisma
  // transaction): the pool's listener covers idle clients only. The holder's
  // query fails on its own, and the holder releases the client with the
  // error, so the pool discards it.
  pool.on("connect", (client) => {
    client.on("error", () => {});
    if (prepared) allowPreparedStatements(client);
  });
  return pool;
}

/** The PrismaClients of the tiers, by the `app` client they belong to. */
const tiersOf = new WeakMap<PrismaClient, Record<Plan, PrismaClient>>();

/** The placements of the `app` client they belong to. */
const placementsOf = new WeakMap<PrismaClient, PlacementPools>();

/** The placement pools of an `app` client made by createDatabases. */
export const placementPoolsOf = (app: PrismaClient): PlacementPools | undefined => placementsOf.get(app);

/**
 * The client of `plan`'s tier pool, in the tenant's placement when it is
 * placed; `app` itself when it has no tiers (a client not made by
 * createDatabases), which serves POOLED tenants only.
 */
export function tierClient(app: PrismaClient, plan: Plan, placement?: PlacementRef): PrismaClient {
  if (placement && placement.placement !== "POOLED") {
    const placements = placementsOf.get(app);
    if (!placements) throw new Error("no placement pools for this client: a placed tenant cannot be served");
    return placements.tier(placement, plan).prisma;
  }
  return tiersOf.get(app)?.[plan] ?? app;
}

/**
 * A client on `pool` whose request slots (src/db/request-slots.ts) take
 * their connections from it: as many slots as the pool has connections, so
 * a query operation waits only when its pool is full.
 */
function clientWithSlots(pool: pg.Pool, size: number) {
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  const slots = new RequestSlots(pool, size);
  registerRequestSlots(prisma, slots);
  return { prisma, slots };
}

export function createDatabases(opts: {
  ownerUrl: string;
  appUrl?: string;
  platformUrl?: string;
  pools?: Partial<PoolSizes>;
  /** Servers that can host DATABASE placements (PLACEMENT_DATABASE_URLS). */
  placementServers?: Record<string, string>;
  /** The placements' idle eviction (PLACEMENT_POOL_IDLE_MS, src/db/placement-pools.ts). */
  placementPools?: PlacementPoolsOptions;
  /** Each plan's share of database time (POOL_TIME_SHARE_*); none given: no plan has one. */
  timeShares?: TimeSharesOption;
  /** Connections one tenant may hold at once in a tier pool of the plan (POOL_TENANT_MAX_*); a plan not named: its pool size. */
  tenantMax?: Partial<Record<Plan, number | null>>;
  /** Named statements on the tier pools' connections (DATABASE_PREPARED_STATEMENTS; src/db/prepared-statements.ts). Default on. */
  preparedStatements?: boolean;
}): Databases {
  const sizes: PoolSizes = { ...DEFAULT_POOL_SIZES, ...opts.pools };
  const appUrl = opts.appUrl ?? opts.ownerUrl;
  const appRole = opts.appUrl ? undefined : APP_ROLE;
  const clock = opts.timeShares?.clock ?? realClock();
  const prepared = opts.preparedStatements ?? true;
  // Every tier pool gets a gate of its own (main, each placement group), with a bucket when its plan has a share.
  const gateOf = (tier: Plan | "platform" | "live"): TierGateOption | undefined => {
    if (tier === "platform" || tier === "live") return undefined;
    const shares = opts.timeShares;
    return { share: shares?.plans[tier] ?? undefined, tenantMax: opts.tenantMax?.[tier] ?? undefined, windowMs: shares?.windowMs ?? 1000, clock };
  };
  const appPools = Object.fromEntries(PLANS.map((plan) => [plan, createPool(appUrl, appRole, sizes[plan], gateOf(plan), prepared)])) as Record<Plan, pg.Pool>;
  const tiers = Object.fromEntries(PLANS.map((plan) => [plan, clientWithSlots(appPools[plan], sizes[plan])])) as Record<
    Plan,
    ReturnType<typeof clientWithSlots>
  >;
  const livePool = createPool(appUrl, appRole, sizes.live);
  const live = clientWithSlots(livePool, sizes.live);
  const platformPool = createPool(opts.platformUrl ?? opts.ownerUrl, opts.platformUrl ? undefined : PLATFORM_ROLE, sizes.platform);
  const platform = new PrismaClient({ adapter: new PrismaPg(platformPool) });
  const app = tiers.PRO.prisma;
  tiersOf.set(app, { FREE: tiers.FREE.prisma, PRO: tiers.PRO.prisma, ENTERPRISE: tiers.ENTERPRISE.prisma });
  const placementAdmin = new PlacementAdmin(opts.ownerUrl, opts.placementServers);
  const placements = new PlacementPools(placementAdmin, sizes, (ref, tier, max) => {
    const login = tier === "platform" ? opts.platformUrl : opts.appUrl;
    const role = tier === "platform" ? PLATFORM_ROLE : APP_ROLE;
    // The deployment's own logins (e.g. through PgBouncer) reach the main
    // server's databases; a placement elsewhere is reached by its server's URL.
    const gate = gateOf(tier);
    if (login && ref.placement === "SCHEMA") return createPool(login, undefined, max, gate, prepared);
    if (login && ref.server === DEFAULT_SERVER) return createPool(withDatabase(login, ref.name!), undefined, max, gate, prepared);
    return createPool(placementAdmin.databaseUrl(ref), role, max, gate, prepared);
  }, opts.placementPools);
  placementsOf.set(app, placements);
  placementsOf.set(live.prisma, placements);
  const all = [...PLANS.map((p) => tiers[p]), live];
  return {
    app,
    platform,
    live: live.prisma,
    appPools,
    platformPool,
    livePool,
    pools: { app_free: appPools.FREE, app_pro: appPools.PRO, app_enterprise: appPools.ENTERPRISE, live: livePool, platform: platformPool },
    placements,
    async close() {
      await Promise.allSettled([platform.$disconnect(), placements.close(), ...all.flatMap((t) => [t.prisma.$disconnect(), t.slots.close()])]);
      await Promise.allSettled([...PLANS.map((p) => appPools[p].end()), livePool.end(), platformPool.end()]);
    },
  };
}
