import { randomUUID } from "node:crypto";
import { createRedisEventTarget } from "@graphql-yoga/redis-event-target";
import { AppError, quotaExceeded } from "../../errors.ts";
import type { PrismaClient } from "../../generated/prisma/client.ts";
import type { Role } from "../../generated/prisma/enums.ts";
import type { Logger } from "../../infra/logger.ts";
import { connectRedis, type RedisClient } from "../../infra/redis.ts";
import type { RedisTarget } from "../../config.ts";
import { limitOf } from "../../policy/quota.ts";
import { renewScope, type Context } from "../../tenancy/context.ts";
import { requestSlotsOf } from "../../db/request-slots.ts";
import type pg from "pg";
import { accessFactsSql, factsFrom, verdict, type Principal } from "./access.ts";
import { readEvents, type EventRead } from "./event-read.ts";
import { liveTopic, type LiveChange, type LiveEvent, type LiveNodeType, type LiveUpdates } from "../../infra/live-events.ts";
import { MemoryStreamSlots, RedisStreamSlots, type StreamSlots } from "./stream-slots.ts";

/**
 * The live-updates hub of one process (docs/live-updates.md).
 *
 * Committed changes are published on their tenant's topic, through Redis
 * pub/sub (`@graphql-yoga/redis-event-target`) so every replica hears them,
 * or an in-process EventTarget without REDIS_URL. A replica listens to a
 * tenant's topic only while it holds a stream of that tenant. The events of
 * a tenant are read once for all its streams: one read transaction on the
 * live pool (off the request tiers), sent as one message, that re-reads the
 * access facts of every subscriber and the events' nodes in the tenant's
 * scope (src/modules/live/event-read.ts); then each stream's
 * authorization is decided on its own facts, a stream whose access has
 * ended is closed with the coded error, and the others get the node. Events
 * that arrive while a read is running are read together by the next one.
 * `access` events (member removed or
 * downgraded, key revoked, tenant suspended), a Redis reconnect and a
 * periodic sweep re-check every open stream of the tenant, so a stream is
 * closed even when it receives no event.
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
}

/** How a stream of one subscription field finds its nodes. */
export interface StreamSpec {
  type: LiveNodeType;
  /** Only nodes of this project (an uuid), when set. */
  projectId: string | null;
  /** The field's @auth role. */
  requires: Role;
}

/** The last value of a stream: the field resolver throws its error (a coded `next` event), then the stream completes. */
export class StreamEnd {
  constructor(readonly error: AppError) {}
}

type Transport = { res?: { destroy(): void }; socket?: { terminate(): void } };

const serviceUnavailable = (message: string, extra: Record<string, unknown> = {}) =>
  new AppError("SERVICE_UNAVAILABLE", message, extra);

export const shutdownError = () => serviceUnavailable("The server is restarting: reconnect", { reconnect: true, retryAfter: 1 });
export const slowConsumerError = () =>
  new AppError("SLOW_CONSUMER", "The client did not keep up with its events: reconnect", { reconnect: true });

class LiveStream implements AsyncIterableIterator<unknown> {
  readonly id = randomUUID();
  readonly tenantId: string;
  readonly principal: Principal;
  private queue: object[] = [];
  private ending: AppError | null = null;
  private closed = false;
  private done = false;
  private wake: (() => void) | null = null;
  private expiry: NodeJS.Timeout | undefined;
  private abortTimer: NodeJS.Timeout | undefined;
  readonly finished: Promise<void>;
  private finish!: () => void;

  constructor(
    private readonly hub: LiveHub,
    private readonly ctx: Context,
    private readonly spec: StreamSpec,
    private readonly transport: Transport,
  ) {
    this.tenantId = ctx.tenant!.id;
    this.principal = {
      userId: ctx.apiKey ? null : (ctx.user?.id ?? null),
      apiKeyId: ctx.apiKey?.id ?? null,
      requires: spec.requires,
      notAfter: ctx.credentialsExpireAt,
      idpIssuer: ctx.binding?.idpIssuer ?? null,
      domain: ctx.binding?.domain ?? null,
    };
    this.finished = new Promise((resolve) => (this.finish = resolve));
    if (this.principal.notAfter !== null) {
      const ms = Math.max(0, Math.min(this.principal.notAfter - Date.now(), 2 ** 31 - 1));
      this.expiry = setTimeout(() => this.hub.recheckTenant(this.tenantId), ms + 1);
      this.expiry.unref();
    }
  }

  /** Whether the event may concern this stream (its node is read before it is delivered). */
  wants(event: LiveEvent): boolean {
    if (event.type !== this.spec.type || this.closed) return false;
    if (!this.spec.projectId || !("projectId" in event) || !event.projectId) return true;
    return event.projectId === this.spec.projectId;
  }

  /** Whether the node, as read, is one this stream delivers (its project filter, on the node's current project). */
  accepts(node: { projectId?: unknown }): boolean {
    return !this.closed && (!this.spec.projectId || node.projectId === this.spec.projectId);
  }

  /** A node for the consumer: its own copy (resolvers of several streams read it). */
  push(node: object) {
    if (this.closed) return;
    if (this.queue.length >= this.hub.bufferSize) {
      this.close(slowConsumerError());
      return;
    }
    this.queue.push({ ...node });
    this.signal();
  }

  /** The verdict of a re-check: the stream goes on with the current role, or ends with the error. */
  apply(result: { role: Role } | { error: AppError }) {
    if ("error" in result) this.close(result.error);
    else this.ctx.role = result.role;
  }

  /**
   * Ends the stream: with an error, the consumer gets it as its last event
   * (and the connection is cut if it does not take it in time); without,
   * it just completes.
   */
  close(error: AppError | null) {
    if (this.closed) return;
    this.closed = true;
    this.ending = error;
    this.queue = [];
    clearTimeout(this.expiry);
    this.hub.unregister(this);
    if (error) {
      this.abortTimer = setTimeout(() => this.abort(), this.hub.abortAfterMs);
      this.abortTimer.unref();
    }
    this.signal();
  }

  /** Cuts the connection of a consumer that does not take its last event. */
  abort() {
    if (this.done) return;
    this.transport.res?.destroy();
    this.transport.socket?.terminate();
    this.end();
  }

  private end() {
    this.done = true;
    clearTimeout(this.abortTimer);
    this.finish();
  }

  private signal() {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  async next(): Promise<IteratorResult<unknown>> {
    for (;;) {
      if (this.done) return { done: true, value: undefined };
      if (this.closed) {
        const error = this.ending;
        this.ending = null;
        if (error) return { done: false, value: new StreamEnd(error) };
        this.end();
        return { done: true, value: undefined };
      }
      const node = this.queue.shift();
      if (!node) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      // A fresh request scope for the event's result (loaders, and a read
      // transaction on the live pool if a nested field needs one), ended
      // once the result is produced (src/http/use-request-transaction.ts).
      renewScope(this.ctx);
      return { done: false, value: node };
    }
  }

  async return(): Promise<IteratorResult<unknown>> {
    this.close(null);
    this.end();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

interface TenantStreams {
  streams: Set<LiveStream>;
  listener: (e: Event) => void;
  checking: boolean;
  again: boolean;
  /** Events waiting for the tenant's next read, with the streams open when each arrived that may want it. */
  pending: { event: LiveEvent; streams: LiveStream[] }[];
  /** A read of events is running. */
  delivering: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const unavailable = () => serviceUnavailable("Live updates are unavailable: reconnect", { reconnect: true, retryAfter: 5 });

type Target = {
  addEventListener(type: string, listener: (e: Event) => void): void;
  removeEventListener(type: string, listener: (e: Event) => void): void;
  dispatchEvent(e: Event): boolean;
};

export class LiveHub implements LiveUpdates {
  readonly logger: Logger;
  readonly bufferSize: number;
  readonly abortAfterMs: number;
  private readonly target: Target;
  private readonly slots: StreamSlots;
  private readonly tenants = new Map<string, TenantStreams>();
  private readonly redis: RedisClient[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private stopping = false;
  private readonly eventPool: pg.Pool;
  private disconnected = false;

  constructor(private readonly options: LiveHubOptions) {
    this.logger = options.logger;
    this.bufferSize = options.bufferSize ?? 100;
    this.abortAfterMs = options.abortAfterMs ?? 2_000;
    const eventPool = requestSlotsOf(options.events)?.pool;
    if (!eventPool) throw new Error("live updates: the events client has no pool (make it with createDatabases)");
    this.eventPool = eventPool;
    const leaseMs = options.leaseMs ?? 30_000;
    if (options.redis) {
      const publishClient = connectRedis(options.redis, { maxRetriesPerRequest: 2 });
      const subscribeClient = connectRedis(options.redis, { maxRetriesPerRequest: null });
      this.redis.push(publishClient, subscribeClient);
      for (const r of this.redis) r.on("error", (err) => this.logger.warn({ err }, "live updates: Redis error"));
      // Messages published while the subscriber was disconnected are lost:
      // re-check every stream once it is back (it re-subscribes by itself).
      let connectedOnce = false;
      subscribeClient.on("ready", () => {
        if (connectedOnce) this.recheckAll();
        connectedOnce = true;
      });
      // The event target neither waits for nor handles its PUBLISH: with
      // Redis down (or the connection closed) that rejection would be
      // unhandled and end the process. A lost event is logged; the streams
      // re-check themselves (on reconnect and every recheckIntervalMs).
      const publisher = {
        publish: (channel: string, message: string) =>
          publishClient.publish(channel, message).catch((err: unknown) => {
            this.logger.warn({ err }, "live updates: event not published");
            return 0;
          }),
      } as unknown as RedisClient;
      this.target = createRedisEventTarget({ publishClient: publisher, subscribeClient }) as unknown as Target;
      this.slots = new RedisStreamSlots(publishClient, leaseMs);
    } else {
      this.target = new EventTarget();
      this.slots = new MemoryStreamSlots(leaseMs);
    }
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
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
    let n = 0;
    for (const t of this.tenants.values()) n += t.streams.size;
    return n;
  }

  /** Open streams of a tenant, on every replica. */
  count(tenantId: string): Promise<number> {
    return this.slots.count(tenantId);
  }

  publish(tenantId: string, changes: LiveChange[]): void {
    // After close() the publish connection is gone (its rejection would be unhandled).
    if (this.disconnected) return;
    const at = Date.now();
    for (const change of changes) {
      const detail: LiveEvent = { ...change, at };
      this.target.dispatchEvent(new CustomEvent(liveTopic(tenantId), { detail }));
    }
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
        listener: (e) => this.dispatch(tenant.id, created, (e as CustomEvent<LiveEvent>).detail),
      };
      entry = created;
      this.tenants.set(tenant.id, entry);
      this.target.addEventListener(liveTopic(tenant.id), entry.listener);
    }
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
          read = await this.read(tenantId, streams, batch.map((b) => b.event));
        } catch (err) {
          this.logger.warn({ err, tenantId }, "live events could not be loaded");
          for (const s of streams) s.close(unavailable());
          continue;
        }
        // Each subscriber's own authorization, from the facts of this read.
        const now = Date.now();
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

  /**
   * The tenant's pending events in one read on the live pool (one
   * round-trip, src/modules/live/event-read.ts): the access facts of every
   * subscriber and the nodes by type, with their projects.
   */
  private read(tenantId: string, streams: LiveStream[], events: LiveEvent[]) {
    const ids = new Map<LiveNodeType, Set<string>>();
    for (const e of events) {
      if (!("id" in e) || typeof e.id !== "string" || !UUID.test(e.id)) continue;
      const set = ids.get(e.type) ?? new Set<string>();
      set.add(e.id);
      ids.set(e.type, set);
    }
    return readEvents(this.eventPool, tenantId, streams.map((s) => s.principal), ids);
  }

  private forgetIfIdle(tenantId: string, entry: TenantStreams) {
    if (entry.streams.size === 0 && !entry.checking && !entry.delivering && this.tenants.get(tenantId) === entry) {
      this.tenants.delete(tenantId);
      this.target.removeEventListener(liveTopic(tenantId), entry.listener);
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
        const rows = await this.options.platform.$queryRaw<{ status: string; roles: unknown; keys: unknown }[]>(
          accessFactsSql(tenantId, streams.map((s) => s.principal)),
        );
        const facts = factsFrom(rows);
        const now = Date.now();
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

  recheckAll(): void {
    for (const tenantId of [...this.tenants.keys()]) void this.recheckTenant(tenantId);
  }

  /**
   * Graceful shutdown: refuses new streams, ends every open one with
   * SERVICE_UNAVAILABLE `{ reconnect: true }`, gives the consumers up to
   * `abortAfterMs` to take that last event (then cuts them), frees the slots
   * and closes the Redis connections.
   */
  /**
   * Ends every open stream (a shutdown: they would hold the server open);
   * publishing goes on until close(), so a mutation that commits while the
   * server drains still tells the other replicas' subscribers.
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
    this.disconnected = true;
    for (const r of this.redis) r.disconnect();
  }
}
