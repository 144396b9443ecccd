import type { PrismaClient } from "../../generated/prisma/client.ts";
import { quotaExceeded, serviceUnavailable } from "../../errors.ts";
import type { Logger } from "../../infra/logger.ts";
import type { RedisTarget } from "../../config.ts";
import { limitOf } from "../../policy/quota.ts";
import type { Context } from "../../tenancy/context.ts";
import { requestSlotsOf } from "../../db/request-slots.ts";
import type pg from "pg";
import { LiveBus } from "./bus.ts";
import type { EventSource } from "./event-read.ts";
import { placementPoolsOf } from "../../db/clients.ts";
import { assertPlacementOf, POOLED, type PlacementRef } from "../../db/placement-admin.ts";
import type { PlacementPools } from "../../db/placement-pools.ts";
import type { LiveChange, LiveEvent, LiveUpdates } from "../../infra/live-events.ts";
import { MemoryStreamSlots, RedisStreamSlots, type StreamSlots } from "./stream-slots.ts";
import { LiveStream, shutdownError, timersOn, type LiveClock, type StreamOwner, type StreamSpec, type Transport } from "./stream.ts";
import { TenantStreams, type TenantReads } from "./tenant-streams.ts";
import { bindStream } from "./delivery.ts";

/**
 * The live-updates hub of one process (docs/live-updates.md). Committed
 * changes go out on their tenant's topic (bus.ts); a replica listens to a
 * tenant's topic only while it holds a stream of that tenant, whose events
 * and access re-checks its TenantStreams reads (tenant-streams.ts). `access`
 * events, a Redis reconnect and a periodic sweep re-check every open stream
 * of the tenant, so a stream is closed even when it receives no event. A
 * placed tenant's (SCHEMA, DATABASE) reads go to its placement's live pool
 * (docs/placement.md).
 */

export interface LiveHubOptions {
  /** Redis (a URL or a cluster's nodes) for pub/sub and the stream slots; in-process (one replica) without it. */
  redis?: RedisTarget;
  /** REDIS_KEY_PREFIX: the stream slots' keys and the pub/sub channels under it (src/infra/redis.ts). */
  redisKeyPrefix?: string;
  /** Reads the access facts of all open streams of a tenant (re-checks). */
  platform: PrismaClient;
  /** The client of the live pool (tenantgraph_app, src/db/clients.ts): its pool reads the events' nodes and their subscribers' access. */
  events: PrismaClient;
  logger: Logger;
  /** Events waiting for a stream's consumer before it counts as slow and is closed. */
  bufferSize?: number;
  /** Period of the re-check of every open stream (a safety net behind `access` events). */
  recheckIntervalMs?: number;
  /** Lease of a stream's slot in the shared count; renewed at a third of it. */
  leaseMs?: number;
  /** How long a closed stream's consumer gets to take its last event before the connection is cut. */
  abortAfterMs?: number;
  /** The time, ms epoch: the app's clock (ContextDeps.clock). Credentials are judged by it (and by PostgreSQL's time, whichever is later). Default Date.now. */
  now?: () => number;
  /** Wakes the hub at a time of `now` (a credential's own end); default: a real timer for the time left. Tests move a manual clock instead. */
  wakeAt?: LiveClock["wakeAt"];
  /** Streams of a tenant handed an event before the event loop gets a turn (default 32). */
  fanOutChunk?: number;
  /** The turn given to the event loop between two chunks of a fan-out; default setImmediate. */
  pause?: () => Promise<void>;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class LiveHub implements LiveUpdates, StreamOwner {
  readonly logger: Logger;
  readonly bufferSize: number;
  readonly abortAfterMs: number;
  readonly clock: LiveClock;
  private readonly bus: LiveBus;
  private readonly slots: StreamSlots;
  private readonly tenants = new Map<string, TenantStreams>();
  private readonly timers: NodeJS.Timeout[] = [];
  private stopping = false;
  private readonly eventPool: pg.Pool;
  private readonly placements: PlacementPools | undefined;
  private readonly reads: TenantReads;

  constructor(options: LiveHubOptions) {
    this.logger = options.logger;
    this.bufferSize = options.bufferSize ?? 100;
    this.abortAfterMs = options.abortAfterMs ?? 2_000;
    const timers = timersOn(options.now);
    this.clock = { now: timers.now, wakeAt: options.wakeAt ?? timers.wakeAt };
    const eventPool = requestSlotsOf(options.events)?.pool;
    if (!eventPool) throw new Error("live updates: the events client has no pool (make it with createDatabases)");
    this.eventPool = eventPool;
    this.placements = placementPoolsOf(options.events);
    this.reads = {
      platform: options.platform,
      source: (tenantId, ref) => this.source(tenantId, ref),
      logger: this.logger,
      clock: this.clock,
      fanOutChunk: Math.max(1, options.fanOutChunk ?? 32),
      pause: options.pause ?? nextTurn,
    };
    const leaseMs = options.leaseMs ?? 30_000;
    // Messages published while the subscriber was disconnected are lost:
    // re-check every stream once it is back (it re-subscribes by itself).
    this.bus = new LiveBus(options.redis, this.logger, () => this.recheckAll(), options.redisKeyPrefix);
    this.slots = this.bus.client ? new RedisStreamSlots(this.bus.client, leaseMs) : new MemoryStreamSlots(leaseMs);
    const every = (ms: number, fn: () => void) => this.timers.push(setInterval(fn, ms).unref());
    every(leaseMs / 3, () => {
      this.slots.renew(this.streams().map((s) => ({ tenantId: s.tenantId, streamId: s.id }))).catch((err) =>
        this.logger.warn({ err }, "live updates: stream leases not renewed"),
      );
    });
    every(options.recheckIntervalMs ?? 30_000, () => this.recheckAll());
  }

  private streams(): LiveStream[] {
    return [...this.tenants.values()].flatMap((t) => [...t.streams]);
  }

  /** Open streams of this process (all tenants). */
  get size(): number {
    return this.streams().length;
  }

  /** Open streams of a tenant, on every replica. */
  count(tenantId: string): Promise<number> {
    return this.slots.count(tenantId);
  }

  publish(tenantId: string, changes: LiveChange[]): void {
    const at = Date.now();
    this.bus.publish(tenantId, changes.map((change) => ({ ...change, at })));
  }

  /**
   * Opens a stream for the subscriber of `ctx` (its tenant, role and
   * credentials are already checked by the field's @auth): takes a slot of
   * the tenant's SUBSCRIPTIONS limit (QUOTA_EXCEEDED when none is free) and
   * starts listening to the tenant's topic.
   */
  async open(ctx: Context, spec: StreamSpec, transport: Transport = {}): Promise<AsyncIterableIterator<unknown>> {
    if (this.stopping) throw shutdownError();
    const tenant = ctx.tenant!;
    const ref = tenant.placement ?? POOLED;
    // The directory's cache only proposes the route: a name that is not this tenant's is refused.
    assertPlacementOf(tenant.id, ref);
    const stream = new LiveStream(this, ctx, spec, transport);
    const limit = limitOf(tenant, "SUBSCRIPTIONS");
    // Redis down or hung (the command timed out): no slot can be counted, so
    // none is taken; the subscriber retries (SERVICE_UNAVAILABLE, Retry-After).
    const slot = await this.slots.acquire(tenant.id, stream.id, limit).catch((err: unknown) => {
      this.logger.warn({ err }, "live updates: stream slot not taken");
      throw serviceUnavailable("redis", 1);
    });
    if (!slot.ok) throw quotaExceeded("SUBSCRIPTIONS", limit!, slot.used, 1);
    let entry = this.tenants.get(tenant.id);
    if (!entry) {
      const created = new TenantStreams(tenant.id, ref, this.reads, (e) => this.forgetIfIdle(e));
      entry = created;
      this.tenants.set(tenant.id, entry);
      this.bus.listen(tenant.id, (event) => this.dispatch(tenant.id, created, event));
    }
    // A stream opened after a move names the new placement: reads go there
    // (a stale one is caught by the route every read confirms).
    entry.ref = ref;
    entry.streams.add(stream);
    bindStream(ctx, stream);
    return stream;
  }

  private dispatch(tenantId: string, entry: TenantStreams, event: LiveEvent | null) {
    if (!event || typeof event !== "object") return;
    if (event.type === "access") {
      void this.recheckTenant(tenantId);
      return;
    }
    entry.enqueue(event);
  }

  /** Where a tenant's events are read: the main live pool, or its placement's (a schema's as the read's search_path). */
  private source(tenantId: string, ref: PlacementRef): EventSource {
    if (ref.placement === "POOLED") return { pool: this.eventPool, schema: null };
    assertPlacementOf(tenantId, ref);
    if (!this.placements) throw new Error("live updates: no placement pools, a placed tenant's events cannot be read");
    return { pool: this.placements.live(ref), schema: ref.placement === "SCHEMA" ? ref.name : null };
  }

  private forgetIfIdle(entry: TenantStreams) {
    if (entry.idle && this.tenants.get(entry.tenantId) === entry) {
      this.tenants.delete(entry.tenantId);
      this.bus.unlisten(entry.tenantId);
    }
  }

  unregister(stream: LiveStream) {
    const entry = this.tenants.get(stream.tenantId);
    if (entry?.streams.delete(stream)) this.forgetIfIdle(entry);
    this.slots.release(stream.tenantId, stream.id).catch((err) => this.logger.warn({ err }, "live updates: stream slot not released"));
  }

  /** Re-reads the access facts of every open stream of the tenant (one statement) and closes those whose access ended. */
  async recheckTenant(tenantId: string): Promise<void> {
    await this.tenants.get(tenantId)?.recheck();
  }

  /**
   * Re-checks every tenant's streams (the periodic safety net, and after the
   * Redis subscriber reconnects), one tenant at a time: the reads go to the
   * platform pool (4 connections), which every tier's authentication shares
   * (the directory's misses); 100 tenants' reads at once queued behind each
   * other there every 30 s. A sweep asked for while one runs runs once more
   * after it (a reconnect during the sweep still re-checks every tenant).
   */
  recheckAll(): void {
    if (this.sweeping) {
      this.sweepAgain = true;
      return;
    }
    this.sweeping = true;
    void (async () => {
      try {
        do {
          this.sweepAgain = false;
          for (const tenantId of [...this.tenants.keys()]) {
            if (this.stopping) return;
            await this.recheckTenant(tenantId);
          }
        } while (this.sweepAgain);
      } finally {
        this.sweeping = false;
      }
    })();
  }

  private sweeping = false;
  private sweepAgain = false;

  /**
   * Shutdown, first step: refuses new streams, ends the open ones with
   * SERVICE_UNAVAILABLE `{ reconnect: true }`, gives their consumers
   * `abortAfterMs` to take it (then cuts them). Publishing goes on until
   * close(): a mutation committed during the drain still reaches the others.
   */
  async closeStreams(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    const streams = this.streams();
    for (const s of streams) s.close(shutdownError());
    await Promise.all(streams.map((s) => s.finished));
  }

  async close(): Promise<void> {
    await this.closeStreams();
    this.bus.close();
  }
}
