import { PrismaPg } from "@prisma/adapter-pg";
import type pg from "pg";
import { PrismaClient } from "../generated/prisma/client.ts";
import type { Plan } from "../generated/prisma/enums.ts";
import { RequestSlots, registerRequestSlots } from "./request-slots.ts";
import { placementKey, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";

/**
 * The connection pools of the placements (docs/placement.md, "Pools"), made
 * on first use and kept for the process's life:
 *   - POOLED tenants use the main tier pools (src/db/clients.ts);
 *   - SCHEMA tenants share a second set of tier pools on the main database,
 *     so a busy SCHEMA tenant never takes a POOLED tenant's connections; a
 *     schema's clients name its tables (the adapter's `schema` option) and
 *     its transactions set search_path to it alone;
 *   - each DATABASE placement has tier pools of its own, on its database.
 * Every group is divided by plan, with the POOL_SIZE_<PLAN> sizes: one
 * tier's slow queries hold only that tier's connections of that placement;
 * each group also has a small pool for live-event reads (POOL_SIZE_LIVE).
 * The app pools connect as tenantgraph_app and the platform ones as
 * tenantgraph_platform, like the main ones: with APP_DATABASE_URL /
 * PLATFORM_DATABASE_URL (their own logins) for SCHEMA placements and for
 * DATABASE placements on the main server; elsewhere through the server's
 * URL with the role set at connection start.
 */

export interface PlacementClient {
  prisma: PrismaClient;
  slots: RequestSlots;
}

/** Opens a pool of `tier` on the placement (the same login settings as the main pools where they apply; `live` logs in as the app pools do). */
type CreatePool = (ref: PlacementRef, tier: Plan | "platform" | "live", max: number) => pg.Pool;

export class PlacementPools {
  private readonly pools = new Map<string, pg.Pool>();
  private readonly clients = new Map<string, PlacementClient>();
  private readonly platforms = new Map<string, PrismaClient>();

  constructor(
    readonly admin: PlacementAdmin,
    private readonly sizes: Record<Plan, number> & { platform: number; live: number },
    private readonly createPool: CreatePool,
  ) {}

  /** Pools made so far, by name (metrics): `<placement>:<plan>` and `<placement>:platform`. */
  get all(): ReadonlyMap<string, pg.Pool> {
    return this.pools;
  }

  /** SCHEMA placements share one pool group; each DATABASE placement is its own. */
  private group(ref: PlacementRef): string {
    return ref.placement === "SCHEMA" ? "schema" : placementKey(ref);
  }

  private pool(ref: PlacementRef, tier: Plan | "platform" | "live"): pg.Pool {
    const key = `${this.group(ref)}:${tier}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = this.createPool(ref, tier, this.sizes[tier]);
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** The request-path client of a placed tenant of this plan (with its request slots). */
  tier(ref: PlacementRef, plan: Plan): PlacementClient {
    const key = `${placementKey(ref)}:${plan}`;
    let client = this.clients.get(key);
    if (!client) {
      const pool = this.pool(ref, plan);
      const schema = ref.placement === "SCHEMA" ? ref.name! : undefined;
      const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { schema }) });
      const slots = new RequestSlots(pool, this.sizes[plan], 10_000, schema);
      registerRequestSlots(prisma, slots);
      client = { prisma, slots };
      this.clients.set(key, client);
    }
    return client;
  }

  /**
   * The pool of the live-event reads in a placement (tenantgraph_app, like
   * the main `live` pool, POOL_SIZE_LIVE): event delivery of a placed tenant
   * never takes a request's connection (src/modules/live/hub.ts).
   */
  live(ref: PlacementRef): pg.Pool {
    return this.pool(ref, "live");
  }

  /** The platform role's client in a placement (analytics fan-out, moves). */
  platform(ref: PlacementRef): PrismaClient {
    const key = placementKey(ref);
    let client = this.platforms.get(key);
    if (!client) {
      const schema = ref.placement === "SCHEMA" ? ref.name! : undefined;
      client = new PrismaClient({ adapter: new PrismaPg(this.pool(ref, "platform"), { schema }) });
      this.platforms.set(key, client);
    }
    return client;
  }

  /** Forgets a placement's clients (after it was dropped); a DATABASE placement's pools are closed. */
  async forget(ref: PlacementRef): Promise<void> {
    const prefix = placementKey(ref);
    const closing: Promise<unknown>[] = [];
    for (const [key, c] of this.clients) {
      if (key.startsWith(`${prefix}:`)) {
        this.clients.delete(key);
        closing.push(c.prisma.$disconnect(), c.slots.close());
      }
    }
    const platform = this.platforms.get(prefix);
    if (platform) {
      this.platforms.delete(prefix);
      closing.push(platform.$disconnect());
    }
    await Promise.allSettled(closing);
    if (ref.placement === "DATABASE") {
      for (const [key, pool] of this.pools) {
        if (key.startsWith(`${prefix}:`)) {
          this.pools.delete(key);
          closing.push(pool.end());
        }
      }
    }
    await Promise.allSettled(closing);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...[...this.clients.values()].flatMap((c) => [c.prisma.$disconnect(), c.slots.close()]), ...[...this.platforms.values()].map((p) => p.$disconnect())]);
    await Promise.allSettled([...this.pools.values()].map((p) => p.end()));
    this.clients.clear();
    this.platforms.clear();
    this.pools.clear();
  }
}
