import type { PrismaClient } from "../../generated/prisma/client.ts";
import { quotaExceeded } from "../../errors.ts";
import type { Logger } from "../../infra/logger.ts";
import type { RedisTarget } from "../../config.ts";
import { limitOf } from "../../policy/quota.ts";
import type { Context } from "../../tenancy/context.ts";
import { requestSlotsOf } from "../../db/request-slots.ts";
import type pg from "pg";
import { readAccessFacts, verdict } from "./access.ts";
import { LiveBus } from "./bus.ts";
import { readEvents, type EventRead, type EventSource } from "./event-read.ts";
import { placementPoolsOf } from "../../db/clients.ts";
import { assertPlacementOf, POOLED, type PlacementRef } from "../../db/placement-admin.ts";
import type { PlacementPools } from "../../db/placement-pools.ts";
import { routeOf } from "../../db/placement-route.ts";
import type { LiveChange, LiveEvent, LiveUpdates } from "../../infra/live-events.ts";
import { MemoryStreamSlots, RedisStreamSlots, type StreamSlots } from "./stream-slots.ts";
import { LiveStream, shutdownError, timersOn, unavailable, type LiveClock, type StreamOwner, type StreamSpec, type Transport } from "./stream.ts";

/**
 * The live-updates hub of one process (docs/live-updates.md). Committed
 * changes go out on their tenant's topic (bus.ts); a replica listens to a
 * tenant's topic only while it holds a stream of that tenant. A tenant's
 * events are read once for all its streams, in one message on the live pool
 * that also re-reads every subscriber's access facts (event-read.ts); each
 * stream's authorization is decided on its own facts (a stream whose access
 * ended is closed with the coded error), the others get the node. Events
 * arriving during a read are read together by the next one. `access`
 * events, a Redis reconnect and a periodic sweep re-check every open stream
 * of the tenant, so a stream is closed even when it receives no event.
 *
 * A placed tenant's (SCHEMA, DATABASE) events and re-checks are read in its
 * placement, on that placement's live pool (docs/placement.md), the route
 * its streams were opened with checked first (assertPlacementOf) and
 * confirmed by the placement's own tenants row in the same message: a
 * stale route (a move) closes the tenant's streams to reconnect, where the
 * directory names the new placement.
 */

export interface LiveHubOptions {
  /** Redis (a URL or a cluster's nodes) for pub/sub and the stream slots; in-process (one replica) without it. */
  redis?: RedisTarget;
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
}

interface TenantStreams {
  streams: Set<LiveStream>;
  checking: boolean;
  again: boolean;
  /** Events waiting for the tenant's next read, with the streams open when each arrived that may want it. */
  pending: { event: LiveEvent; streams: LiveStream[] }[];
  /** A read of events is running. */
  delivering: boolean;
  /** Where the tenant's rows are, as its newest stream's directory entry said. */
  ref: PlacementRef;
}

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

  constructor(private readonly options: LiveHubOptions) {
    this.logger = options.logger;
    this.bufferSize = options.bufferSize ?? 100;
    this.abortAfterMs = options.abortAfterMs ?? 2_000;
    const timers = timersOn(options.now);
    this.clock = { now: timers.now, wakeAt: options.wakeAt ?? timers.wakeAt };
    const eventPool = requestSlotsOf(options.events)?.pool;
    if (!eventPool) throw new Error("live updates: the events client has no pool (make it with createDatabases)");
    this.eventPool = eventPool;
    this.placements = placementPoolsOf(options.events);
    const leaseMs = options.leaseMs ?? 30_000;
    // Messages published while the subscriber was disconnected are lost:
    // re-check every stream once it is back (it re-subscribes by itself).
    this.bus = new LiveBus(options.redis, this.logger, () => this.recheckAll());
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
    const slot = await this.slots.acquire(tenant.id, stream.id, limit);
    if (!slot.ok) throw quotaExceeded("SUBSCRIPTIONS", limit!, slot.used, 1);
    let entry = this.tenants.get(tenant.id);
    if (!entry) {
      const created: TenantStreams = {
        streams: new Set(),
        checking: false,
        again: false,
        pending: [],
        delivering: false,
        ref,
      };
      entry = created;
      this.tenants.set(tenant.id, entry);
      this.bus.listen(tenant.id, (event) => this.dispatch(tenant.id, created, event));
    }
    // A stream opened after a move names the new placement: reads go there
    // (a stale one is caught by the route every read confirms).
    entry.ref = ref;
    entry.streams.add(stream);
    return stream;
  }

  private dispatch(tenantId: string, entry: TenantStreams, event: LiveEvent | null) {
    if (!event || typeof event !== "object") return;
    if (event.type === "access") {
      void this.recheckTenant(tenantId);
      return;
    }
    const streams = [...entry.streams].filter((s) => s.wants(event));
    if (!streams.length) return;
    entry.pending.push({ event, streams });
    if (!entry.delivering) void this.deliver(tenantId, entry);
  }

  /** Where a tenant's events are read: the main live pool, or its placement's (a schema's as the read's search_path). */
  private source(tenantId: string, ref: PlacementRef): EventSource {
    if (ref.placement === "POOLED") return { pool: this.eventPool, schema: null };
    assertPlacementOf(tenantId, ref);
    if (!this.placements) throw new Error("live updates: no placement pools, a placed tenant's events cannot be read");
    return { pool: this.placements.live(ref), schema: ref.placement === "SCHEMA" ? ref.name : null };
  }

  /**
   * Whether the read came from where the tenant's rows are: the answering
   * database's own tenants row names the route it was sent on. Otherwise the
   * tenant moved (or the entry was stale): its streams are closed, to
   * reconnect through the directory. No tenant row at all is decided by the
   * facts (access denied).
   */
  private confirmRoute(streams: LiveStream[], ref: PlacementRef, route: string | null): boolean {
    if (route === null || route === routeOf(ref)) return true;
    for (const s of streams) s.close(unavailable());
    return false;
  }

  /**
   * Reads the tenant's pending events, all of them in one read, and
   * hands each node to the streams it is for, until none are pending.
   */
  private async deliver(tenantId: string, entry: TenantStreams): Promise<void> {
    entry.delivering = true;
    try {
      while (entry.pending.length) {
        const batch = entry.pending.splice(0);
        const streams = [...new Set(batch.flatMap((b) => b.streams))];
        let read: EventRead;
        try {
          read = await readEvents(this.source(tenantId, entry.ref), tenantId, streams.map((s) => s.principal), batch.map((b) => b.event), this.clock.now());
        } catch (err) {
          this.logger.warn({ err, tenantId }, "live events could not be loaded");
          for (const s of streams) s.close(unavailable());
          continue;
        }
        if (!this.confirmRoute(streams, entry.ref, read.route)) continue;
        // Each subscriber's own authorization, from the facts of this read.
        const now = this.clock.now();
        for (const s of streams) s.apply(verdict(s.principal, read.facts, now));
        for (const { event, streams: recipients } of batch) {
          const node = "id" in event ? read.nodes.get(`${event.type}:${event.id}`) : undefined;
          if (!node) continue;
          for (const s of recipients) if (s.accepts(node)) s.push(node);
        }
      }
    } finally {
      entry.delivering = false;
      this.forgetIfIdle(tenantId, entry);
    }
  }

  private forgetIfIdle(tenantId: string, entry: TenantStreams) {
    if (entry.streams.size === 0 && !entry.checking && !entry.delivering && this.tenants.get(tenantId) === entry) {
      this.tenants.delete(tenantId);
      this.bus.unlisten(tenantId);
    }
  }

  unregister(stream: LiveStream) {
    const entry = this.tenants.get(stream.tenantId);
    if (entry?.streams.delete(stream)) this.forgetIfIdle(stream.tenantId, entry);
    this.slots.release(stream.tenantId, stream.id).catch((err) => this.logger.warn({ err }, "live updates: stream slot not released"));
  }

  /** Re-reads the access facts of every open stream of the tenant (one statement) and closes those whose access ended. */
  async recheckTenant(tenantId: string): Promise<void> {
    const entry = this.tenants.get(tenantId);
    if (!entry) return;
    if (entry.checking) {
      entry.again = true;
      return;
    }
    entry.checking = true;
    try {
      do {
        entry.again = false;
        const streams = [...entry.streams];
        if (!streams.length) break;
        const principals = streams.map((s) => s.principal);
        const now = this.clock.now();
        let facts;
        if (entry.ref.placement === "POOLED") facts = await readAccessFacts(this.options.platform, tenantId, principals, now);
        else {
          // A placed tenant's facts are its placement's (the directory's copy may lag a sync).
          const read = await readEvents(this.source(tenantId, entry.ref), tenantId, principals, [], now);
          if (!this.confirmRoute(streams, entry.ref, read.route)) break;
          facts = read.facts;
        }
        for (const s of streams) s.apply(verdict(s.principal, facts, now));
      } while (entry.again);
    } catch (err) {
      // PostgreSQL unreachable: no stream can load an event either (each
      // event re-checks first); the next sweep tries again.
      this.logger.warn({ err, tenantId }, "live updates: access re-check failed");
    } finally {
      entry.checking = false;
      this.forgetIfIdle(tenantId, entry);
    }
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
