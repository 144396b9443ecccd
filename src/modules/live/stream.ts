import { randomUUID } from "node:crypto";
import { AppError } from "../../errors.ts";
import type { Role } from "../../generated/prisma/enums.ts";
import type { LiveEvent, LiveNodeType } from "../../infra/live-events.ts";
import { apiKeyHashOf, type Context } from "../../tenancy/context.ts";
import type { Principal } from "./access.ts";
import type { Delivery } from "./delivery.ts";

/**
 * One open subscription stream (docs/live-updates.md): the async iterator
 * the subscription field returns. The hub pushes it the nodes it may
 * deliver and the verdicts of its re-checks; it holds at most `bufferSize`
 * events its consumer has not taken (a slow consumer is closed with
 * SLOW_CONSUMER), and ends with a coded error event when its access ends.
 */

/** What a stream needs of the hub that holds it. */
export interface StreamOwner {
  readonly bufferSize: number;
  readonly abortAfterMs: number;
  /** The hub's clock (LiveClock): credentials end by it. */
  readonly clock: LiveClock;
  unregister(stream: LiveStream): void;
  recheckTenant(tenantId: string): Promise<void>;
}

/**
 * The time of the live hub: `now` (the app's clock, ContextDeps.clock) and
 * a wake-up at a time of that clock (a credential's own end). A test moves
 * both by hand (test/helpers/manual-clock.ts) instead of waiting.
 */
export interface LiveClock {
  now(): number;
  /** Calls `fn` once `now()` has reached `at` (ms epoch); returns the cancel. */
  wakeAt(at: number, fn: () => void): () => void;
}

/** `now` with real timers for the time left (a clock that moves with real time). */
export function timersOn(now: () => number = Date.now): LiveClock {
  return {
    now,
    wakeAt(at, fn) {
      // A timer fires at most 2^31-1 ms ahead; one that fires early re-checks and wakes again at the true end.
      const timer = setTimeout(fn, Math.max(0, Math.min(at - now(), 2 ** 31 - 1)) + 1);
      timer.unref();
      return () => clearTimeout(timer);
    },
  };
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

export type Transport = { res?: { destroy(): void }; socket?: { terminate(): void } };

const serviceUnavailable = (message: string, extra: Record<string, unknown> = {}) =>
  new AppError("SERVICE_UNAVAILABLE", message, extra);

export const shutdownError = () => serviceUnavailable("The server is restarting: reconnect", { reconnect: true, retryAfter: 1 });
/** The live pool could not read the events: the streams are closed, to reconnect. */
export const unavailable = () => serviceUnavailable("Live updates are unavailable: reconnect", { reconnect: true, retryAfter: 5 });
export const slowConsumerError = () =>
  new AppError("SLOW_CONSUMER", "The client did not keep up with its events: reconnect", { reconnect: true });

export class LiveStream implements AsyncIterableIterator<unknown> {
  readonly id = randomUUID();
  readonly tenantId: string;
  readonly principal: Principal;
  private queue: Delivery[] = [];
  private ending: AppError | null = null;
  private closed = false;
  private done = false;
  private wake: (() => void) | null = null;
  /** Cancels the wake-up at the credential's own end. */
  private expiry: (() => void) | undefined;
  private wakeTime: number | null = null;
  private abortTimer: NodeJS.Timeout | undefined;
  readonly finished: Promise<void>;
  private finish!: () => void;

  constructor(
    private readonly hub: StreamOwner,
    private readonly ctx: Context,
    private readonly spec: StreamSpec,
    private readonly transport: Transport,
  ) {
    this.tenantId = ctx.tenant!.id;
    this.principal = {
      userId: ctx.apiKey ? null : (ctx.user?.id ?? null),
      apiKeyId: ctx.apiKey?.id ?? null,
      apiKeyHash: ctx.apiKey ? apiKeyHashOf(ctx) : null,
      requires: spec.requires,
      tokenExpiresAt: ctx.apiKey ? null : ctx.credentialsExpireAt,
      idpIssuer: ctx.binding?.idpIssuer ?? null,
      domain: ctx.binding?.domain ?? null,
    };
    this.finished = new Promise((resolve) => (this.finish = resolve));
    // The first wake-up: the token's exp, or the key's end as the directory
    // proposed it (expiry, grace end); every re-check sets it again from
    // PostgreSQL's answer.
    this.wakeAt(ctx.credentialsExpireAt);
  }

  /** Re-checks the tenant's streams once the hub's clock reaches `at` (null: no wake-up). */
  private wakeAt(at: number | null) {
    if (at === this.wakeTime && this.expiry) return;
    this.expiry?.();
    this.wakeTime = at;
    this.expiry = at === null || this.closed ? undefined : this.hub.clock.wakeAt(at, () => void this.hub.recheckTenant(this.tenantId));
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

  /**
   * An event's node for the consumer: the Delivery every accepting stream of
   * the tenant is handed (one execution per class of equal subscribers:
   * delivery.ts); an execution works on its own copy of the node.
   */
  push(delivery: Delivery) {
    if (this.closed) return;
    if (this.queue.length >= this.hub.bufferSize) {
      this.close(slowConsumerError());
      return;
    }
    this.queue.push(delivery);
    this.signal();
  }

  /** The verdict of a re-check: the stream goes on with the current role, or ends with the error. */
  apply(result: { role: Role; until: number | null } | { error: AppError }) {
    if ("error" in result) {
      this.close(result.error);
      return;
    }
    this.ctx.role = result.role;
    this.wakeAt(result.until);
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
    this.expiry?.();
    this.expiry = undefined;
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
      const delivery = this.queue.shift();
      if (!delivery) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      // The execution that resolves it (once per class of equal
      // subscribers) renews the request scope first (src/http/use-live-delivery.ts).
      return { done: false, value: delivery };
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

