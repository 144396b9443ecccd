import type { PrismaClient } from "../../generated/prisma/client.ts";
import type { PlacementRef } from "../../db/placement-admin.ts";
import { routeOf } from "../../db/placement-route.ts";
import type { LiveEvent } from "../../infra/live-events.ts";
import type { Logger } from "../../infra/logger.ts";
import { readAccessFacts, verdict } from "./access.ts";
import { Delivery } from "./delivery.ts";
import { readEvents, type EventRead, type EventSource } from "./event-read.ts";
import { unavailable, type LiveClock, type LiveStream } from "./stream.ts";

/** What a tenant's streams read with: the hub's clients, clock and logger. */
export interface TenantReads {
  /** Reads the access facts of a POOLED tenant's streams (re-checks). */
  platform: PrismaClient;
  /** Where a tenant's events (and a placed tenant's facts) are read. */
  source(tenantId: string, ref: PlacementRef): EventSource;
  logger: Logger;
  clock: LiveClock;
  /** A large fan-out is handed out in chunks of this many streams, `pause()` between two (LiveHubOptions.fanOutChunk). */
  fanOutChunk: number;
  /** Lets the event loop run (its I/O, a dashboard's requests) between two chunks of a fan-out: setImmediate. */
  pause(): Promise<void>;
}

/**
 * One tenant's open streams on this replica (docs/live-updates.md): its
 * events are read once for all its streams, the events arriving during a
 * read together by the next one, and every read re-checks each stream's
 * access on its own facts. A read answered by a database whose tenants row
 * names another route (the tenant moved) closes the streams, to reconnect
 * through the directory.
 */
export class TenantStreams {
  readonly streams = new Set<LiveStream>();
  private checking = false;
  private again = false;
  /** Events waiting for the tenant's next read, with the streams open when each arrived that may want it. */
  private readonly pending: { event: LiveEvent; streams: LiveStream[] }[] = [];
  /** A read of events is running. */
  private delivering = false;

  constructor(
    readonly tenantId: string,
    /** Where the tenant's rows are, as its newest stream's directory entry said. */
    public ref: PlacementRef,
    private readonly reads: TenantReads,
    /** Called after each read and re-check: the hub forgets the tenant once it is idle. */
    private readonly settled: (entry: TenantStreams) => void,
  ) {}

  /** No stream, and no read or re-check running. */
  get idle(): boolean {
    return this.streams.size === 0 && !this.checking && !this.delivering;
  }

  /** An event of the tenant's topic, for the streams that may want it. */
  enqueue(event: LiveEvent): void {
    const streams = [...this.streams].filter((s) => s.wants(event));
    if (!streams.length) return;
    this.pending.push({ event, streams });
    if (!this.delivering) void this.deliver();
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
  private async deliver(): Promise<void> {
    const { tenantId } = this;
    this.delivering = true;
    try {
      while (this.pending.length) {
        const batch = this.pending.splice(0);
        const streams = [...new Set(batch.flatMap((b) => b.streams))];
        let read: EventRead;
        try {
          read = await readEvents(this.reads.source(tenantId, this.ref), tenantId, streams.map((s) => s.principal), batch.map((b) => b.event), this.reads.clock.now());
        } catch (err) {
          this.reads.logger.warn({ err, tenantId }, "live events could not be loaded");
          for (const s of streams) s.close(unavailable());
          continue;
        }
        if (!this.confirmRoute(streams, this.ref, read.route)) continue;
        // Each subscriber's own authorization, from the facts of this read.
        const now = this.reads.clock.now();
        for (const s of streams) s.apply(verdict(s.principal, read.facts, now));
        // A stream's result is produced and written in the microtasks that
        // follow its push: a tenant's thousand streams handed the node in one
        // go would hold the event loop for all their executions and writes
        // (a third of a second), every request of the process waiting behind.
        // In chunks, with the loop's turn between two (docs/live-updates.md,
        // "Sixth round"); each stream still gets its events in order (one
        // delivery at a time per tenant).
        let handed = 0;
        const deliveries: Delivery[] = [];
        for (const { event, streams: recipients } of batch) {
          const node = "id" in event ? read.nodes.get(`${event.type}:${event.id}`) : undefined;
          if (!node) continue;
          // One Delivery per event: the streams of a class of equal subscribers share its execution (delivery.ts).
          const delivery = new Delivery(node);
          deliveries.push(delivery);
          for (const s of recipients) {
            if (!s.accepts(node)) continue;
            if (handed > 0 && handed % this.reads.fanOutChunk === 0) await this.reads.pause();
            s.push(delivery);
            handed++;
          }
        }
        // The streams waiting for an event take it in the microtasks after
        // their push; a later taker executes for itself (Delivery.finish).
        setImmediate(() => deliveries.forEach((d) => d.finish()));
      }
    } finally {
      this.delivering = false;
      this.settled(this);
    }
  }

  /** Re-reads the access facts of every open stream of the tenant (one statement) and closes those whose access ended. */
  async recheck(): Promise<void> {
    const { tenantId } = this;
    if (this.checking) {
      this.again = true;
      return;
    }
    this.checking = true;
    try {
      do {
        this.again = false;
        const streams = [...this.streams];
        if (!streams.length) break;
        const principals = streams.map((s) => s.principal);
        const now = this.reads.clock.now();
        let facts;
        if (this.ref.placement === "POOLED") facts = await readAccessFacts(this.reads.platform, tenantId, principals, now);
        else {
          // A placed tenant's facts are its placement's (the directory's copy may lag a sync).
          const read = await readEvents(this.reads.source(tenantId, this.ref), tenantId, principals, [], now);
          if (!this.confirmRoute(streams, this.ref, read.route)) break;
          facts = read.facts;
        }
        for (const s of streams) s.apply(verdict(s.principal, facts, now));
      } while (this.again);
    } catch (err) {
      // PostgreSQL unreachable: no stream can load an event either (each
      // event re-checks first); the next sweep tries again.
      this.reads.logger.warn({ err, tenantId }, "live updates: access re-check failed");
    } finally {
      this.checking = false;
      this.settled(this);
    }
  }
}
