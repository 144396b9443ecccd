import { createHash } from "node:crypto";
import { lateCount, type LateCount } from "../infra/rate-limit.ts";
import { tenantKey, type Admission, type Store } from "../infra/store.ts";

/**
 * The directory's cache in the store (docs/revocation.md): entries name the
 * main database they were read from (another's is a miss), concurrent misses
 * of one key share one read, and a store that fails or is slower than
 * STORE_BUDGET_MS is skipped for STORE_BACKOFF_MS on the directory's clock.
 */

const TTL = 300;
/**
 * Entries live TTL minus up to this much (at random): entries cached together
 * (a server's first requests, a bench's warm-up) do not all expire in the same
 * second and send their reads at once to the platform pool (4 connections,
 * shared by every tier).
 */
const TTL_JITTER = 60;
/** How long a cache read or invalidation may wait for the store. */
export const STORE_BUDGET_MS = 500;
/** After a store failure or timeout, the directory goes straight to PostgreSQL this long. */
export const STORE_BACKOFF_MS = 1_000;
const UNAVAILABLE = Symbol("store unavailable");

/** The field of an entry naming the database it was read from, and the field holding a value that is not an object. */
const OWNER = "@db";
const SCALAR = "@v";

/** An entry as stored: the value with the database that answered it. */
function encodeEntry(value: unknown, owner: string): string {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) return JSON.stringify({ ...value, [OWNER]: owner });
  return JSON.stringify({ [OWNER]: owner, [SCALAR]: value ?? null });
}

/** The value of an entry read from `owner`; undefined for an entry of another database (or of an older format): a miss. */
function decodeEntry<T>(text: string, owner: string): { value: T | null } | undefined {
  let entry: unknown;
  try {
    entry = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (entry === null || typeof entry !== "object" || (entry as Record<string, unknown>)[OWNER] !== owner) return undefined;
  if (SCALAR in entry) return { value: (entry as Record<string, unknown>)[SCALAR] as T | null };
  const { [OWNER]: _owner, ...value } = entry as Record<string, unknown>;
  return { value: value as T };
}

export const directoryKeys = {
  user: (subject: string) => `u:sub:${subject}`,
  slug: (slug: string) => `tslug:${slug}`,
  tenant: (id: string) => tenantKey(id, "info"),
  membership: (tenantId: string, userId: string) => tenantKey(tenantId, "m", userId),
  apiKey: (hash: string) => `ak:${hash}`,
  domain: (domain: string) => `tdomain:${domain}`,
  issuer: (issuer: string) => `tiss:${createHash("sha256").update(issuer, "utf8").digest("hex")}`,
};

export class DirectoryCache {
  readonly #store: Store;
  readonly #now: () => number;
  /** The identity of the database the entries are read from. */
  readonly #owner: () => Promise<string>;
  /** Until when (ms epoch, on #now) the store is skipped after a failure. */
  #downUntil = 0;
  /** Reads of missed keys in flight, by key (one per key). */
  readonly #loading = new Map<string, Promise<unknown>>();
  /** Cache observer (src/infra/metrics.ts): the key and whether it was a hit. */
  onLookup?: (key: string, hit: boolean) => void;

  constructor(store: Store, owner: () => Promise<string>, now: () => number) {
    this.#store = store;
    this.#owner = owner;
    this.#now = now;
  }

  /** Whether the store was found failing or slow within the last STORE_BACKOFF_MS. */
  get available(): boolean {
    return this.#now() >= this.#downUntil;
  }

  /** `op` on the store within STORE_BUDGET_MS, or UNAVAILABLE (and the store is skipped for a while). */
  async #withStore<T>(op: (store: Store) => Promise<T>): Promise<T | typeof UNAVAILABLE> {
    if (!this.available) return UNAVAILABLE;
    let timer: NodeJS.Timeout | undefined;
    let late: NodeJS.Immediate | undefined;
    // The budget is the store's, not this process's: when the event loop lags,
    // the timer can fire with the store's answer already waiting in the socket.
    // One more turn (setImmediate runs after the loop has read its sockets)
    // lets that answer win, so a busy process does not take the store for slow.
    const timeout = new Promise<typeof UNAVAILABLE>(
      (resolve) => (timer = setTimeout(() => (late = setImmediate(resolve, UNAVAILABLE)), STORE_BUDGET_MS)),
    );
    try {
      // A late rejection of op() is handled by the race, so it is never unhandled.
      const result = await Promise.race([op(this.#store), timeout]);
      if (result === UNAVAILABLE) this.#downUntil = this.#now() + STORE_BACKOFF_MS;
      return result;
    } catch {
      this.#downUntil = this.#now() + STORE_BACKOFF_MS;
      return UNAVAILABLE;
    } finally {
      clearTimeout(timer);
      clearImmediate(late);
    }
  }

  /** The entry of `key`, else `load()` (cached). `fresh`: skip the cached answer (it was about to refuse: PostgreSQL confirms first). */
  async cached<T>(key: string, load: () => Promise<T | null>, fresh = false): Promise<T | null> {
    const owner = await this.#owner();
    const hit = fresh ? null : await this.#withStore((s) => s.get(key));
    // An entry another deployment wrote under the same key is a miss (and is replaced).
    const entry = hit !== UNAVAILABLE && hit !== null ? decodeEntry<T>(hit, owner) : undefined;
    this.onLookup?.(key, !!entry);
    if (entry) return entry.value;
    return this.#load(key, load, owner, { fresh, store: hit !== UNAVAILABLE });
  }

  /**
   * Entries of one tenant read as `cached` reads them, in one store round
   * trip that also hits `counter` (Store.readAndHit) when every entry is a
   * hit of this database whose value has the fields its `admit` asks for
   * (`counter` null: nothing to count). `count`: null when not counted
   * (the caller then counts on its own, once it knows it should).
   */
  async cachedCounting(
    entries: { key: string; load: () => Promise<unknown>; admit: Admission }[],
    counter: { key: string; windowMs: number } | null,
  ): Promise<{ values: unknown[]; count: number | LateCount | null }> {
    const owner = await this.#owner();
    const keys = entries.map((e) => e.key);
    // A value of another database is no hit: the owner is one more field to match.
    const admit = entries.map((e) => ({ ...e.admit, [OWNER]: owner }));
    let sent: { done: boolean; read: Promise<{ count: number | null }> } | undefined;
    const read = await this.#withStore((s) => {
      const op = counter ? s.readAndHit(keys, admit, counter) : Promise.all(keys.map((k) => s.get(k))).then((values) => ({ values, count: null }));
      const state = { done: false, read: op };
      const settle = () => void (state.done = true);
      op.then(settle, settle);
      sent = state;
      return op;
    });
    const values = await Promise.all(
      entries.map((e, i) => {
        const text = read === UNAVAILABLE ? null : (read.values[i] ?? null);
        const entry = text !== null ? decodeEntry(text, owner) : undefined;
        this.onLookup?.(e.key, !!entry);
        return entry ? entry.value : this.#load(e.key, e.load, owner, { fresh: false, store: read !== UNAVAILABLE });
      }),
    );
    if (read !== UNAVAILABLE) return { values, count: read.count };
    // Out of budget but still on its way: the script may yet count the
    // request (review CR-1). Its late answer is the request's count; counting
    // again would count it twice (RateLimiter.consume waits for it instead).
    const late = counter && sent && !sent.done ? sent.read : undefined;
    return { values, count: late ? lateCount(late) : null };
  }

  /** A missed key read by `load()`, then cached (`store`: the store answered, so it is written to). */
  async #load<T>(key: string, load: () => Promise<T | null>, owner: string, opts: { fresh: boolean; store: boolean }): Promise<T | null> {
    const { fresh } = opts;
    // Concurrent misses of one key in this process share one read (on the
    // platform pool every tier shares). A `fresh` read never joins one that started earlier.
    const pending = fresh ? undefined : (this.#loading.get(key) as Promise<T | null> | undefined);
    // Each caller gets its own copy, as from the store.
    if (pending) return pending.then((v) => (v === null ? null : structuredClone(v)));
    const loading = load();
    if (!fresh) {
      this.#loading.set(key, loading);
      const forget = () => {
        if (this.#loading.get(key) === loading) this.#loading.delete(key);
      };
      loading.then(forget, forget);
    }
    const value = await loading;
    // Misses are cached briefly, so a flood of unknown ids cannot hammer
    // PostgreSQL. Not waited for: the answer is already known.
    const ttl = value === null ? 5 : TTL - Math.floor(Math.random() * TTL_JITTER);
    if (opts.store) void this.#withStore((s) => s.set(key, encodeEntry(value, owner), ttl));
    return value;
  }

  /** Best effort: never throws, never waits longer than the budget. */
  async evict(...keys: string[]): Promise<void> {
    if (keys.length) await this.#withStore((s) => s.del(...keys));
  }
}
