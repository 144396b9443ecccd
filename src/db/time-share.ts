import { GraphQLError } from "graphql";
import { LaneQueue } from "./lane-queue.ts";

/**
 * The gate of a tier pool (src/db/tier-pool.ts): who of its waiters gets
 * the next connection, and whether the pool may hand one out at all.
 *
 * Fairness within the tier (docs/request-path.md, "Fairness within a
 * tier"): the waiters are served round-robin by tenant (src/db/lane-queue.ts),
 * so one tenant's backlog delays another tenant's request by one turn, not
 * by the backlog; optionally a tenant holds at most `tenantMax` connections at
 * once (POOL_TENANT_MAX_<PLAN>), its further requests waiting even while
 * the pool has one free.
 *
 * Optionally a share of database time (docs/request-path.md, "Time
 * shares"): a token bucket of held-connection milliseconds. The pool earns
 * `share` connection-ms per ms (0.5: half a connection busy on average) up
 * to `share x windowMs`, and every connection it holds spends one per ms,
 * while it is held (a slow query is paid for as it runs, not after). A
 * connection is handed out only while the balance is not negative and
 * fewer than `max` are held; otherwise the acquisition waits in this pool's
 * own queue, its turn by tenant as above. Only the pool that spent its share
 * waits: other tiers have buckets of their own, or none.
 *
 * Why connection time: PostgreSQL has no per-backend CPU limit, and a
 * backend's CPU is spent while its connection is held; bounding a tier's
 * connections alone still let 2 FREE backends busy without pause take most
 * of a 2-core machine (docs/placement.md, "Measured: neighbours").
 *
 * The app's clock drives it (tests move a manual clock; no real timer then).
 */

/** The app's clock and a wake-up at a time of it (test/helpers/manual-clock.ts has the same shape). */
export interface ShareClock {
  now(): number;
  wakeAt(at: number, fn: () => void): () => void;
}

/** Date.now (or `now`) with real timers for the time left. */
export function realClock(now: () => number = Date.now): ShareClock {
  return {
    now,
    wakeAt(at, fn) {
      const timer = setTimeout(fn, Math.max(0, at - now()));
      return () => clearTimeout(timer);
    },
  };
}

export interface TimeShareOptions {
  /** Connection-ms earned per ms (connection-seconds per second); undefined: no bound but `max`. */
  share?: number;
  /** The bucket holds `share x windowMs` connection-ms: what an idle tier may spend at once. */
  windowMs: number;
  /** Connections held at most (the pool's size). */
  max: number;
  /** Connections one tenant holds at most (undefined: `max`). Untagged acquisitions share no cap. */
  tenantMax?: number;
  /** How long an acquisition waits at most: the plan's statement timeout with a share, pg's connection timeout without (> 0). */
  maxWaitMs: number;
  clock: ShareClock;
}

/** A wait for the tier's share that outlasted its statement timeout: QUERY_TIMEOUT, as a statement that ran that long. */
export class TimeShareTimeout extends GraphQLError {
  /** PostgreSQL's SQLSTATE for a statement timeout: the request path maps it to QUERY_TIMEOUT wherever it surfaces. */
  readonly code = "57014";
  constructor(waitedMs: number) {
    super(`The query was cancelled: it waited ${waitedMs} ms for its plan's share of database time, longer than the plan allows`, {
      extensions: { code: "QUERY_TIMEOUT" },
    });
    this.name = "TimeShareTimeout";
  }
}

/**
 * The client of the request that waited has gone (its signal aborted):
 * its place in the queue is given up, and it takes no connection. Nobody
 * reads the answer; the code says what happened in the logs (nginx's 499).
 */
export class ClientGone extends GraphQLError {
  constructor() {
    super("The client closed the request before it was executed", { extensions: { code: "CLIENT_CLOSED_REQUEST" } });
    this.name = "ClientGone";
  }
}

interface Waiter {
  lane: string;
  since: number;
  /** Waited (at some point) because the share was spent, not only for a free connection. */
  inDebt: boolean;
  admit(release: () => void): void;
  fail(err: Error): void;
  /** Cancels its deadline and stops listening to its signal: it is leaving the queue. */
  cancelDeadline(): void;
}

/** Below this, a balance is zero (floating-point leftovers of the refill). */
const EPSILON = 1e-6;

export class TimeShare {
  /** Connection-ms left; negative: in debt (the pool spent more than its share). */
  private balance: number;
  private at: number;
  private held = 0;
  /** Connections held by tenant, kept only with a `tenantMax`. */
  private readonly heldBy = new Map<string, number>();
  private readonly queue = new LaneQueue<Waiter>();
  private cancelWake: (() => void) | undefined;
  /**
   * Acquisitions that waited because the share was spent, and how long they
   * waited (ms); and those that left the queue because their client went
   * away (`gone`): since start.
   */
  readonly stats = { shareWaits: 0, shareWaitMs: 0, timeouts: 0, gone: 0 };

  constructor(private readonly options: TimeShareOptions) {
    const { share, tenantMax } = options;
    if ((share !== undefined && !(share > 0)) || !(options.windowMs > 0) || !(options.maxWaitMs > 0) || !(options.max >= 1)) throw new Error("invalid time share");
    if (tenantMax !== undefined && !(tenantMax >= 1)) throw new Error("invalid time share");
    this.balance = this.capacity;
    this.at = options.clock.now();
  }

  /** Whether the pool has a share of database time (not only its size and the tenants' turns). */
  get bounded(): boolean {
    return this.options.share !== undefined;
  }

  get capacity(): number {
    return this.options.share === undefined ? Infinity : this.options.share * this.options.windowMs;
  }

  /** Brings the balance to `now`: `share` earned and one spent per held connection, per ms since the last time. */
  private settle(now = this.options.clock.now()): number {
    const elapsed = now - this.at;
    if (elapsed > 0) {
      if (this.options.share !== undefined) this.balance = Math.min(this.capacity, this.balance + (this.options.share - this.held) * elapsed);
      this.at = now;
    }
    return now;
  }

  /** The balance now (connection-ms; negative: in debt). */
  get balanceMs(): number {
    this.settle();
    return this.balance;
  }

  /** Acquisitions queued (for the share or for a connection). */
  get waiting(): number {
    return this.queue.length;
  }

  /** Acquisitions queued while the share is spent. */
  get shareWaiting(): number {
    return this.balanceMs < -EPSILON ? this.queue.length : 0;
  }

  /**
   * The release of one connection's time if `lane` (a tenant; "": untagged)
   * may take one now: no waiter has the turn, the pool has a connection and
   * share left, the tenant is under its cap. Else undefined (then `acquire`).
   */
  tryAcquire(lane = ""): (() => void) | undefined {
    this.settle();
    if (this.queue.ready || this.held >= this.options.max || this.balance < -EPSILON || this.atCap(lane)) return undefined;
    return this.take(lane);
  }

  /**
   * Resolves with the release of one connection's time once `lane` (a
   * tenant; "": untagged) may hold one more. `signal` (the request's
   * client): aborted already, it fails at once (ClientGone) without taking
   * one; aborted while waiting, the waiter leaves the queue at once, so the
   * connection it would have taken goes to the next waiter.
   */
  acquire(lane = "", signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new ClientGone());
    const done = this.tryAcquire(lane);
    if (done) return Promise.resolve(done);
    const now = this.at;
    return new Promise((resolve, reject) => {
      const cancelDeadline = this.options.clock.wakeAt(now + this.options.maxWaitMs, () => this.expire(waiter));
      const gone = () => this.leave(waiter, new ClientGone());
      signal?.addEventListener("abort", gone, { once: true });
      const waiter: Waiter = {
        lane,
        since: now,
        inDebt: false,
        admit: resolve,
        fail: reject,
        cancelDeadline: () => {
          cancelDeadline();
          signal?.removeEventListener("abort", gone);
        },
      };
      this.queue.push(lane, waiter, this.atCap(lane));
      this.pump();
    });
  }

  /** A waiter leaves the queue before its turn (its client went away), and fails with `err`. */
  private leave(waiter: Waiter, err: Error): void {
    if (!this.queue.remove(waiter.lane, waiter)) return;
    waiter.cancelDeadline();
    this.stats.gone++;
    if (waiter.inDebt) this.stats.shareWaitMs += this.settle() - waiter.since;
    waiter.fail(err);
  }

  /** Fails every waiter (the pool is ending). */
  close(err: Error): void {
    this.cancelWake?.();
    this.cancelWake = undefined;
    for (const w of this.queue.drain()) {
      w.cancelDeadline();
      w.fail(err);
    }
  }

  /** Whether the tenant holds as many connections as it may (untagged acquisitions have no cap). */
  private atCap(lane: string): boolean {
    const max = this.options.tenantMax;
    return max !== undefined && lane !== "" && (this.heldBy.get(lane) ?? 0) >= max;
  }

  private take(lane: string): () => void {
    this.held++;
    const capped = this.options.tenantMax !== undefined && lane !== "";
    if (capped) this.heldBy.set(lane, (this.heldBy.get(lane) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.settle();
      this.held--;
      if (capped) {
        const n = this.heldBy.get(lane)! - 1;
        if (n) this.heldBy.set(lane, n);
        else this.heldBy.delete(lane);
        this.queue.resume(lane);
      }
      this.pump();
    };
  }

  private expire(waiter: Waiter): void {
    if (!this.queue.remove(waiter.lane, waiter)) return;
    waiter.cancelDeadline();
    const now = this.settle();
    if (waiter.inDebt || this.balance < -EPSILON) {
      this.stats.timeouts++;
      this.stats.shareWaitMs += now - waiter.since;
      waiter.fail(new TimeShareTimeout(now - waiter.since));
    } else {
      // Waited for a connection only, as pg's own queue would have: its error.
      waiter.fail(new Error("timeout exceeded when trying to connect"));
    }
  }

  /** Admits waiters, tenant by tenant, while the pool has a connection and share left; else wakes itself when the debt is paid. */
  private pump(): void {
    const now = this.settle();
    this.cancelWake?.();
    this.cancelWake = undefined;
    while (this.queue.ready && this.held < this.options.max && this.balance >= -EPSILON) {
      const { lane, item: waiter } = this.queue.shift()!;
      waiter.cancelDeadline();
      if (waiter.inDebt) this.stats.shareWaitMs += now - waiter.since;
      waiter.admit(this.take(lane));
      if (this.atCap(lane)) this.queue.park(lane);
    }
    if (!this.queue.length || this.balance >= -EPSILON) return;
    for (const w of this.queue) {
      if (!w.inDebt) this.stats.shareWaits++;
      w.inDebt = true;
    }
    // Paid back at (share - held) per ms; while the pool holds more than its
    // share the debt grows, and a release pumps again.
    const rate = this.options.share! - this.held;
    if (this.held < this.options.max && rate > 0) {
      this.cancelWake = this.options.clock.wakeAt(now + Math.ceil(-this.balance / rate), () => {
        this.cancelWake = undefined;
        this.pump();
      });
    }
  }
}
