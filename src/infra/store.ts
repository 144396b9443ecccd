import type { RedisTarget } from "../config.ts";
import type { ClientContext, Result } from "ioredis";
import type { Logger } from "./logger.ts";
import { byHashTag, connectRedis, isCluster, scanNodes, type RedisClient } from "./redis.ts";
import { HIT_SCRIPT, READ_HIT_SCRIPT, type Admission } from "./store-scripts.ts";

export type { Admission } from "./store-scripts.ts";

declare module "ioredis" {
  interface RedisCommander<Context extends ClientContext> {
    /** HIT_SCRIPT (defineCommand below, typed as ioredis documents): [count in the window, ms until it resets]. */
    tgHit(key: string, windowMs: number, by: number): Result<[number, number], Context>;
    /** READ_HIT_SCRIPT over one entry and the counter: the keys, window (ms), admissions (JSON). */
    tgReadHit2(entry: string, counter: string, windowMs: number, admit: string): Result<(string | number | null)[], Context>;
    /** READ_HIT_SCRIPT over two entries and the counter. */
    tgReadHit3(a: string, b: string, counter: string, windowMs: number, admit: string): Result<(string | number | null)[], Context>;
  }
}

/**
 * The shared key-value store: Redis when REDIS_URL is set, else an in-process
 * map (./memory-store.ts, one instance only). Tenant keys are `t:{<tenantId>}:...`: the braces
 * keep one tenant's keys in one Redis Cluster slot, and let purge find them.
 * Redis is one server (REDIS_URL) or a cluster (REDIS_CLUSTER_NODES,
 * ./redis.ts); callers never see the difference.
 */
export interface Store {
  readonly kind: "redis" | "memory";
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlSeconds: number): Promise<void>;
  del(...keys: string[]): Promise<void>;
  /** Fixed-window counter: adds `by` and returns the new count (the window ends `windowMs` after its first hit). */
  hit(key: string, windowMs: number, by?: number): Promise<{ count: number }>;
  /**
   * One round trip: the values of `keys`, and a hit of one on `counter` (as
   * `hit`) only when every value meets its `admit` (Admission); count is
   * null when nothing was counted. Every key, the counter's too, has one
   * hash tag (one tenant's: one Redis Cluster slot).
   */
  readAndHit(keys: string[], admit: Admission[], counter: { key: string; windowMs: number }): Promise<{ values: (string | null)[]; count: number | null }>;
  /** Deletes every key matching a glob pattern (SCAN, never KEYS). */
  deletePattern(pattern: string): Promise<number>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * The store cannot answer (Redis down, restarting or too slow). Every
 * RedisStore failure is this error, so callers choose their degraded mode
 * (docs/degraded-modes.md) without knowing ioredis' messages, and whatever
 * does not catch it is answered as SERVICE_UNAVAILABLE (503 + Retry-After),
 * never as a masked 500.
 */
export class StoreUnavailableError extends Error {
  constructor(readonly reason: string) {
    super(`The shared store is unavailable (${reason})`);
    this.name = "StoreUnavailableError";
  }
}

export const isStoreUnavailable = (err: unknown): err is StoreUnavailableError => err instanceof StoreUnavailableError;

export const tenantKey = (tenantId: string, ...parts: string[]) => `t:{${tenantId}}:${parts.join(":")}`;

export interface RedisStoreOptions {
  /** One line per change of state (unavailable / available again). */
  logger?: Pick<Logger, "warn" | "info">;
  /** A command without an answer after this long fails. @default 1000 */
  commandTimeoutMs?: number;
  /**
   * After a timed-out command (Redis reachable but not answering), every
   * command fails at once until a PING is answered again, one PING every
   * this long. @default 1000
   */
  suspendMs?: number;
  /** REDIS_KEY_PREFIX: every key under it (src/infra/redis.ts); callers name keys without it. @default "" */
  keyPrefix?: string;
}

/**
 * Redis with bounded waits. A request never waits on Redis for more than
 * `commandTimeoutMs` in all (docs/degraded-modes.md, "A hung Redis"):
 *  - commands time out (`commandTimeout`);
 *  - once connected, commands sent while the connection is down fail at once
 *    instead of queueing (the offline queue only serves the first connect,
 *    bounded by the same timeout and `maxRetriesPerRequest`);
 *  - a timed-out command means Redis is reachable but not answering (a
 *    network black hole, a stopped process): every command still waiting
 *    is given up on with it (review F3: the steps of a request sent one
 *    after another used to wait a timeout each, 2 s where 1 was promised),
 *    and every command fails at once until Redis answers a PING again
 *    (tried every `suspendMs`), so the requests that come meanwhile wait
 *    for nothing;
 *  - reconnection is retried every second at most, forever: recovery needs
 *    no restart.
 * Connection errors go to one log line per state change (never to ioredis'
 * "Unhandled error event").
 */
export class RedisStore implements Store {
  readonly kind = "redis" as const;
  readonly redis: RedisClient;
  private readonly logger?: RedisStoreOptions["logger"];
  private readonly suspendMs: number;
  /** "connecting" until the first connection: start-up reports that failure itself. */
  private state: "connecting" | "up" | "down" = "connecting";
  /** Redis did not answer a command in time: every command fails at once until a PING is answered (`probe`). */
  private hung = false;
  private probeTimer: NodeJS.Timeout | undefined;
  /** Commands waiting for their answer: given up on together when one times out. */
  private readonly waiting = new Set<(err: Error) => void>();
  /** Times Redis was found hung; commands given up on while waiting; commands refused unsent while hung. */
  readonly stats = { hangs: 0, givenUp: 0, refused: 0 };
  /** REDIS_KEY_PREFIX; ioredis adds it to command keys, deletePattern to its SCAN pattern. */
  readonly keyPrefix: string;
  /** Why the store last failed (start-up names it when Redis cannot be reached). */
  lastError = "";

  /** `target`: a Redis URL or the seed nodes of a cluster (RedisTarget). */
  constructor(target: RedisTarget, opts: RedisStoreOptions = {}) {
    this.logger = opts.logger;
    this.suspendMs = opts.suspendMs ?? 1000;
    this.keyPrefix = opts.keyPrefix ?? "";
    this.redis = connectRedis(target, {
      keyPrefix: this.keyPrefix,
      commandTimeout: opts.commandTimeoutMs ?? 1000,
      connectTimeout: 2000,
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(100 * times, 1000),
      enableAutoPipelining: true,
      lazyConnect: false,
    });
    this.redis.defineCommand("tgHit", { numberOfKeys: 1, lua: HIT_SCRIPT });
    // Over several keys of one hash tag (readAndHit checks it). A fixed
    // number of keys: ioredis' cluster autopipelining files a command under
    // the slot of its first argument, which must be a key.
    this.redis.defineCommand("tgReadHit2", { numberOfKeys: 2, lua: READ_HIT_SCRIPT });
    this.redis.defineCommand("tgReadHit3", { numberOfKeys: 3, lua: READ_HIT_SCRIPT });
    this.redis.on("ready", () => {
      // From now on a command sent while disconnected fails at once.
      this.redis.options.enableOfflineQueue = false;
      this.resume();
      this.setAvailable(true, "connected");
    });
    this.redis.on("error", (err: Error) => {
      this.lastError = err.message;
      this.setAvailable(false, err.message);
    });
    this.redis.on("close", () => this.setAvailable(false, "connection closed"));
  }

  private closed = false;

  private setAvailable(up: boolean, reason: string) {
    const next = up ? "up" : this.state === "connecting" ? "connecting" : "down";
    if (next === this.state || this.closed) return;
    const was = this.state;
    this.state = next;
    if (next === "down") this.logger?.warn({ dependency: "redis", reason }, "redis unavailable: degraded mode (docs/degraded-modes.md)");
    else if (was === "down") this.logger?.info({ dependency: "redis" }, "redis available again");
  }

  /** Waits for the first connection (start-up); false when none within `timeoutMs`. */
  async ready(timeoutMs: number): Promise<boolean> {
    if (this.redis.status === "ready") return true;
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.redis.off("ready", onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.redis.on("ready", onReady);
    });
  }

  /**
   * Runs one command; every failure becomes StoreUnavailableError. While
   * Redis is hung the command is not sent; a command waiting when another
   * times out is given up on (its own answer or failure, if it comes, is
   * dropped: handled, never an unhandled rejection).
   */
  private run<T>(command: () => Promise<T>): Promise<T> {
    if (this.hung) {
      this.stats.refused++;
      return Promise.reject(new StoreUnavailableError("not answering"));
    }
    const sent = this.send(command);
    return new Promise<T>((resolve, reject) => {
      this.waiting.add(reject);
      sent.then(
        (value) => this.waiting.delete(reject) && resolve(value),
        (err: unknown) => this.waiting.delete(reject) && reject(err),
      );
    });
  }

  private async send<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (/timed out/i.test(message)) this.hang(message);
      throw new StoreUnavailableError(this.redis.status === "ready" ? message : "not connected");
    }
  }

  /** A command timed out: every command waiting is given up on, and every later one fails at once until `probe` gets an answer. */
  private hang(reason: string): void {
    if (this.hung || this.closed) return;
    this.hung = true;
    this.stats.hangs++;
    this.setAvailable(false, reason);
    const given = [...this.waiting];
    this.waiting.clear();
    this.stats.givenUp += given.length;
    for (const reject of given) reject(new StoreUnavailableError("not answering"));
    this.probeTimer = setTimeout(() => this.probe(), this.suspendMs);
    this.probeTimer.unref();
  }

  /** One PING (outside `run`, which refuses while hung): answered, commands go through again; else another later. */
  private probe(): void {
    this.probeTimer = undefined;
    if (!this.hung || this.closed) return;
    this.redis.ping().then(
      () => {
        this.resume();
        if (this.redis.status === "ready") this.setAvailable(true, "answering");
      },
      () => {
        if (!this.hung || this.closed) return;
        this.probeTimer = setTimeout(() => this.probe(), this.suspendMs);
        this.probeTimer.unref();
      },
    );
  }

  private resume(): void {
    this.hung = false;
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  get(key: string) {
    return this.run(() => this.redis.get(key));
  }
  async set(key: string, value: string, ttlSeconds: number) {
    await this.run(() => this.redis.set(key, value, "EX", ttlSeconds));
  }
  async del(...keys: string[]) {
    if (!keys.length) return;
    // A cluster refuses one DEL over several slots (CROSSSLOT): one DEL per hash tag.
    if (isCluster(this.redis)) await Promise.all(byHashTag(keys).map((group) => this.run(() => this.redis.del(...group))));
    else await this.run(() => this.redis.del(...keys));
  }
  async hit(key: string, windowMs: number, by = 1) {
    const [count] = await this.run(() => this.redis.tgHit(key, windowMs, by));
    return { count };
  }
  async readAndHit(keys: string[], admit: Admission[], counter: { key: string; windowMs: number }) {
    const all = [...keys, counter.key];
    if (byHashTag(all).length !== 1) throw new Error("readAndHit: keys of one hash tag only (one cluster slot)");
    const args = [counter.windowMs, JSON.stringify(admit)] as const;
    const [count, ...values] = await this.run(() =>
      all.length === 2
        ? this.redis.tgReadHit2(all[0]!, all[1]!, ...args)
        : all.length === 3
          ? this.redis.tgReadHit3(all[0]!, all[1]!, all[2]!, ...args)
          : Promise.reject(new Error("readAndHit: one or two entries")),
    );
    return { values: values.map((v) => (v === null ? null : String(v))), count: count === null ? null : Number(count) };
  }
  /**
   * On a cluster, SCANs every master; each batch is unlinked one hash tag at a
   * time. ioredis prefixes neither SCAN's pattern nor the keys it returns:
   * the pattern gets the key prefix here (whose characters are no glob's),
   * and the keys found lose it before UNLINK, which ioredis prefixes again.
   */
  async deletePattern(pattern: string) {
    let deleted = 0;
    const prefix = this.keyPrefix;
    for (const node of scanNodes(this.redis)) {
      let cursor = "0";
      do {
        const [next, found] = await this.run(() => node.scan(cursor, "MATCH", prefix + pattern, "COUNT", 500));
        cursor = next;
        const keys = found.filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
        if (!keys.length) continue;
        for (const group of isCluster(this.redis) ? byHashTag(keys) : [keys]) deleted += await this.run(() => this.redis.unlink(...group));
      } while (cursor !== "0");
    }
    return deleted;
  }
  async ping() {
    try {
      const ok = (await this.run(() => this.redis.ping())) === "PONG";
      if (ok && this.redis.status === "ready") this.setAvailable(true, "answering");
      return ok;
    } catch {
      return false;
    }
  }
  async close() {
    this.closed = true;
    this.resume();
    this.redis.disconnect();
  }
}
