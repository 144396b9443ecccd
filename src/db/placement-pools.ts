import { PrismaPg } from "@prisma/adapter-pg";
import type pg from "pg";
import { PrismaClient } from "../generated/prisma/client.ts";
import type { Plan } from "../generated/prisma/enums.ts";
import { RequestSlots, registerRequestSlots } from "./request-slots.ts";
import { placementKey, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";

/**
 * The connection pools of the placements, made on first use: one group for
 * the SCHEMA tenants (on the main database), one per DATABASE placement;
 * each divided by plan (POOL_SIZE_<PLAN>) plus a live-event pool, logging in
 * as the main pools do. A group idle for PLACEMENT_POOL_IDLE_MS, with no
 * connection checked out and no waiter, is dropped and reopened on next use;
 * its pools are ended, their checkouts forwarded to the group's new pools
 * (a holder of an old client keeps working, on the new pools).
 * Why and how: docs/placement.md, "Pools".
 */

export interface PlacementClient {
  prisma: PrismaClient;
  slots: RequestSlots;
}

/** Opens a pool of `tier` on the placement (the same login settings as the main pools where they apply; `live` logs in as the app pools do). */
type CreatePool = (ref: PlacementRef, tier: Plan | "platform" | "live", max: number) => pg.Pool;

export interface PlacementPoolsOptions {
  /** A group unused this long is dropped (0: never). */
  idleMs?: number;
  /** The clock of the idle eviction (tests inject one). */
  clock?: () => number;
  /** How often the eviction runs on its own (default: every min(idleMs, 60 s)); 0: only when evictIdle is called. */
  sweepMs?: number;
}

export const DEFAULT_PLACEMENT_POOL_IDLE_MS = 300_000;

export class PlacementPools {
  private readonly pools = new Map<string, pg.Pool>();
  /** Per pool key: a placement of its group and its tier (to reopen it for an evicted pool's holders). */
  private readonly made = new Map<string, { ref: PlacementRef; tier: Plan | "platform" | "live" }>();
  private readonly clients = new Map<string, PlacementClient>();
  private readonly platforms = new Map<string, PrismaClient>();
  /** Per group: when it was last used. */
  private readonly lastUsed = new Map<string, number>();
  private readonly idleMs: number;
  private readonly clock: () => number;
  private sweep: NodeJS.Timeout | undefined;

  constructor(
    readonly admin: PlacementAdmin,
    private readonly sizes: Record<Plan, number> & { platform: number; live: number },
    private readonly createPool: CreatePool,
    options: PlacementPoolsOptions = {},
  ) {
    this.idleMs = options.idleMs ?? DEFAULT_PLACEMENT_POOL_IDLE_MS;
    this.clock = options.clock ?? Date.now;
    const every = options.sweepMs ?? Math.min(this.idleMs, 60_000);
    if (this.idleMs > 0 && every > 0) {
      this.sweep = setInterval(() => this.evictIdle(), every);
      this.sweep.unref();
    }
  }

  private touch(group: string): void {
    this.lastUsed.set(group, this.clock());
  }

  /**
   * Drops every group unused for idleMs that holds no checked-out
   * connection (and has no waiter); answers the groups dropped. Their next
   * use opens them anew.
   */
  evictIdle(now = this.clock()): string[] {
    if (this.idleMs <= 0) return [];
    const evicted: string[] = [];
    for (const [group, last] of this.lastUsed) {
      if (now - last < this.idleMs) continue;
      const pools = [...this.pools].filter(([key]) => key.startsWith(`${group}:`));
      if (pools.some(([, p]) => p.totalCount > p.idleCount || p.waitingCount > 0)) continue;
      for (const [key, pool] of pools) this.retire(key, pool);
      const keyGroup = (key: string) => this.groupOfKey(key.slice(0, key.lastIndexOf(":")));
      for (const key of [...this.clients.keys()]) if (keyGroup(key) === group) this.clients.delete(key);
      for (const key of [...this.platforms.keys()]) if (this.groupOfKey(key) === group) this.platforms.delete(key);
      this.lastUsed.delete(group);
      evicted.push(group);
    }
    return evicted;
  }

  /**
   * An evicted pool: ended (its idle connections closed; it opens none), its
   * checkouts forwarded to its group's pool of the same tier, made anew on
   * first need. So a holder of an old client (a subscription's TenantDb,
   * made once per stream) keeps working, on the new pool, and no evicted
   * pool keeps connections beside the new one.
   */
  private retire(key: string, pool: pg.Pool): void {
    const { ref, tier } = this.made.get(key)!;
    this.pools.delete(key);
    this.made.delete(key);
    const current = () => this.pool(ref, tier) as unknown as Record<"connect" | "query", (...a: unknown[]) => unknown>;
    pool.connect = ((...args: unknown[]) => current().connect(...args)) as pg.Pool["connect"];
    pool.query = ((...args: unknown[]) => current().query(...args)) as pg.Pool["query"];
    void pool.end().catch(() => {});
  }

  /** The group of a placement key (`SCHEMA:<name>` or a DATABASE key). */
  private groupOfKey(placementKeyText: string): string {
    return placementKeyText.startsWith("schema:") ? "schema" : placementKeyText;
  }

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
      const group = this.group(ref);
      // A connection checked out or given back is a use of the group.
      pool.on("acquire", () => this.touch(group));
      pool.on("release", () => this.touch(group));
      this.pools.set(key, pool);
      this.made.set(key, { ref, tier });
    }
    this.touch(this.group(ref));
    return pool;
  }

  /** The request-path client of a placed tenant of this plan (with its request slots). */
  tier(ref: PlacementRef, plan: Plan): PlacementClient {
    const key = `${placementKey(ref)}:${plan}`;
    let client = this.clients.get(key);
    this.touch(this.group(ref));
    if (!client) {
      const pool = this.pool(ref, plan);
      const schema = ref.placement === "SCHEMA" ? ref.name! : undefined;
      const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { schema }) });
      const slots = new RequestSlots(pool, this.sizes[plan], { schema });
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
    this.touch(this.group(ref));
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
          this.made.delete(key);
          closing.push(pool.end());
        }
      }
    }
    await Promise.allSettled(closing);
  }

  async close(): Promise<void> {
    if (this.sweep) clearInterval(this.sweep);
    this.sweep = undefined;
    this.lastUsed.clear();
    await Promise.allSettled([...[...this.clients.values()].flatMap((c) => [c.prisma.$disconnect(), c.slots.close()]), ...[...this.platforms.values()].map((p) => p.$disconnect())]);
    await Promise.allSettled([...this.pools.values()].map((p) => p.end()));
    this.clients.clear();
    this.platforms.clear();
    this.pools.clear();
    this.made.clear();
  }
}
