import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../generated/prisma/client.ts";

/**
 * Request slots: how a query operation's read transaction is a plain pooled
 * connection that Prisma's queries still join, without Prisma's
 * interactive-transaction machinery (about 1.5 ms of CPU a request).
 *
 * A request holds a connection of its tier's pool for its whole database
 * phase (its transaction), and a RequestConnection queues its statements.
 * A slot is a PrismaClient whose driver adapter sits on a SlotPool: a pool
 * facade whose queries go to the RequestConnection it is lent to. A request
 * borrows a slot only while it has Prisma calls in flight (the calls of one
 * tick share the borrowed slot, so Prisma's batching of findUnique calls
 * still merges them), and gives it back when the last one settles; a slot
 * is lent to one request at a time, so Prisma's batching (per client) never
 * mixes two requests' lookups. Hand-written SQL goes to the connection's
 * queue directly. So the number of slots follows the Prisma calls in flight,
 * not the connections held (each PrismaClient costs ~5 MB of RSS); a pool
 * can lend as many slots as it has connections, made on first need, and
 * a slot left idle for `idleMs` is let go (but the last one): a burst's
 * clients do not stay for the life of the process (docs/performance.md,
 * "Ninth round").
 * A mutation's changes are Prisma interactive transactions on a borrowed
 * slot, run as savepoints of its transaction (`connect()` below).
 */

/** The statements of one request's connection, one at a time in call order (pg would queue them too, but that is deprecated). */
export class RequestConnection {
  private tail: Promise<unknown> = Promise.resolve();
  private batchTail: Promise<void> = Promise.resolve();
  private savepoints = 0;
  constructor(readonly client: pg.PoolClient) {}

  /** A savepoint name unique in this request (they count from 1 in each). */
  nextSavepoint(): string {
    return `prisma_batch_${++this.savepoints}`;
  }

  /**
   * Waits for the connection's previous batch transaction (a savepoint) to
   * end, and resolves with the function that ends this one. Two batches
   * interleaved on one connection would nest their savepoints, and the
   * outer one's RELEASE destroys the inner one ("savepoint ... does not
   * exist"), so they take turns; plain statements do not wait.
   */
  async exclusiveBatch(): Promise<() => void> {
    let end!: () => void;
    const ended = new Promise<void>((resolve) => (end = resolve));
    const previous = this.batchTail;
    this.batchTail = previous.then(() => ended);
    await previous;
    return end;
  }

  query(...args: unknown[]): Promise<unknown> {
    const client = this.client;
    const run = this.tail.then(() => (client.query as (...a: unknown[]) => Promise<unknown>)(...args));
    this.tail = run.catch(() => undefined);
    return run;
  }
}

export class SlotPool extends pg.Pool {
  /** The request connection the slot is lent to, if any. */
  connection: RequestConnection | undefined;

  constructor(config?: pg.PoolConfig) {
    super(config);
    // pg.Pool.query is a dozen overloads: one implementation (the lent
    // connection's, which takes the same arguments) stands for all of them.
    this.query = ((...args: unknown[]) => {
      const connection = this.connection;
      if (!connection) return Promise.reject(new Error("request slot used without its connection"));
      return connection.query(...args);
    }) as pg.Pool["query"];
  }

  /**
   * Prisma runs a batch of unique lookups it cannot merge into one query
   * (several User nodes: the tenant scope adds an OR to each) as a batch
   * transaction, and a mutation's change as an interactive transaction;
   * both ask the pool for a connection. There is no second
   * connection: the request's transaction is already open on the held one,
   * so the batch runs there, as a savepoint (BEGIN, COMMIT and ROLLBACK
   * become SAVEPOINT, RELEASE and ROLLBACK TO; an isolation level stays the
   * request transaction's).
   */
  override async connect(): Promise<pg.PoolClient> {
    const connection = this.connection;
    if (!connection) throw new Error("request slot used without its connection");
    const endBatch = await connection.exclusiveBatch();
    const name = connection.nextSavepoint();
    const statement = (text: string) => {
      const verb = text.trim().toUpperCase();
      if (verb === "BEGIN") return `SAVEPOINT ${name}`;
      if (verb === "COMMIT") return `RELEASE SAVEPOINT ${name}`;
      if (verb === "ROLLBACK") return `ROLLBACK TO SAVEPOINT ${name}`;
      if (verb.startsWith("SET TRANSACTION")) return "SELECT 1";
      return text;
    };
    const nested = {
      query: (config: unknown, ...rest: unknown[]) =>
        typeof config === "string"
          ? connection.query(statement(config), ...rest)
          : config && typeof config === "object" && typeof (config as { text?: unknown }).text === "string"
            ? connection.query({ ...(config as object), text: statement((config as { text: string }).text) }, ...rest)
            : connection.query(config, ...rest),
      on: () => nested,
      removeListener: () => nested,
      release: endBatch,
    };
    // Not a whole pg.PoolClient: the part of one that Prisma's adapter uses (query, on, release).
    return nested as unknown as pg.PoolClient;
  }
}

export interface RequestSlot {
  pool: SlotPool;
  prisma: PrismaClient;
}

export interface RequestSlotsOptions {
  /** How long a caller waits for a slot before it fails. */
  acquireTimeoutMs?: number;
  /** A SCHEMA placement's schema: its slots' queries name its tables (docs/placement.md). */
  schema?: string;
  /** A slot idle this long is let go (its PrismaClient disconnected), the last one kept. Default 30 s. */
  idleMs?: number;
  /** The clock the idle times are read on (tests move a manual one and call `sweep()`); default `performance.now`. */
  now?: () => number;
}

/** A slot left idle this long is let go: a tier's burst of clients (~2.2 MB of heap each) is given back within a minute. */
const SLOT_IDLE_MS = 30_000;

export class RequestSlots {
  /** Idle slots, the least recently released first. */
  private readonly idle: { slot: RequestSlot; since: number }[] = [];
  private readonly waiting: ((slot: RequestSlot) => void)[] = [];
  private created = 0;
  private readonly all = new Set<RequestSlot>();
  private readonly acquireTimeoutMs: number;
  private readonly schema: string | undefined;
  private readonly idleMs: number;
  private readonly now: () => number;
  /** Runs `sweep` while there is more than one slot (so a RequestSlots nobody uses any more is not kept alive by it). */
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** The app pool the slots' connections come from. */
    readonly pool: pg.Pool,
    /** How many slots there can be. */
    readonly max: number,
    options: RequestSlotsOptions = {},
  ) {
    this.acquireTimeoutMs = options.acquireTimeoutMs ?? 10_000;
    this.schema = options.schema;
    this.idleMs = options.idleMs ?? SLOT_IDLE_MS;
    if (!(this.idleMs > 0 && Number.isFinite(this.idleMs))) throw new RangeError("request slots: idleMs must be a positive number of ms");
    this.now = options.now ?? (() => performance.now());
  }

  /** Whether the sweep timer runs (more than one slot exists). */
  get sweeping(): boolean {
    return this.timer !== undefined;
  }

  /** Slots there are now (each a PrismaClient). */
  get made(): number {
    return this.created;
  }

  acquire(): Promise<RequestSlot> {
    const slot = this.idle.pop()?.slot;
    if (slot) return Promise.resolve(slot);
    if (this.created < this.max) {
      this.created++;
      const pool = new SlotPool({ max: 1 });
      const created = { pool, prisma: new PrismaClient({ adapter: new PrismaPg(pool, { schema: this.schema }) }) };
      this.all.add(created);
      if (this.created > 1 && !this.timer) {
        this.timer = setInterval(() => this.sweep(), this.idleMs / 2);
        this.timer.unref();
      }
      return Promise.resolve(created);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(take);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error("timed out waiting for a request slot"));
      }, this.acquireTimeoutMs);
      const take = (s: RequestSlot) => {
        clearTimeout(timer);
        resolve(s);
      };
      this.waiting.push(take);
    });
  }

  release(slot: RequestSlot): void {
    slot.pool.connection = undefined;
    const next = this.waiting.shift();
    if (next) next(slot);
    else this.idle.push({ slot, since: this.now() });
  }

  /**
   * Lets go of the slots idle for `idleMs` or longer, keeping one: their
   * clients are disconnected (nothing else holds them; a slot is idle only
   * when no request has it) and made again on the next need.
   */
  sweep(): void {
    const before = this.now() - this.idleMs;
    while (this.idle.length && this.created > 1 && this.idle[0]!.since <= before) {
      const { slot } = this.idle.shift()!;
      this.created--;
      this.all.delete(slot);
      void slot.prisma.$disconnect().catch(() => {});
    }
    if (this.created <= 1) this.stopSweeping();
  }

  private stopSweeping(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  async close(): Promise<void> {
    this.stopSweeping();
    await Promise.allSettled([...this.all].map((s) => s.prisma.$disconnect()));
  }
}

/** The request slots of the app PrismaClient made by createDatabases (for TenantDb). */
const slotsOfClient = new WeakMap<PrismaClient, RequestSlots>();
export const requestSlotsOf = (client: PrismaClient) => slotsOfClient.get(client);
export const registerRequestSlots = (client: PrismaClient, slots: RequestSlots) => void slotsOfClient.set(client, slots);
