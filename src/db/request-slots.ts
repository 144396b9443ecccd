import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../generated/prisma/client.ts";

/**
 * Request slots: how a query operation's read transaction is a plain pooled
 * connection that Prisma's queries still join, without Prisma's
 * interactive-transaction machinery (about 1.5 ms of CPU a request).
 *
 * A slot is a PrismaClient whose driver adapter sits on a SlotPool: a pool
 * facade whose queries go to the one connection the slot holds for the
 * request that leased it. A request leases a slot, opens its transaction on
 * a connection of the app pool, and every Prisma query of the request goes
 * through the slot's client; hand-written SQL goes through the slot's
 * queue to the same connection. A slot serves one request at a time, so Prisma's own batching of
 * findUnique calls (per client) never mixes two requests' lookups. A pool
 * has as many slots as connections (src/db/clients.ts: one pool per plan),
 * created on first need (each PrismaClient costs ~2.5 MB), so a request
 * waits for a slot only when its pool is full; mutations do not use them
 * (they run in Prisma transactions of their own on their tier's client).
 */
export class SlotPool extends pg.Pool {
  private held: pg.PoolClient | undefined;
  private tail: Promise<unknown> = Promise.resolve();

  get connection(): pg.PoolClient | undefined {
    return this.held;
  }

  set connection(client: pg.PoolClient | undefined) {
    this.held = client;
    this.tail = Promise.resolve();
  }

  /**
   * One statement at a time on the connection, in call order (pg would
   * queue them too, but that is deprecated): resolvers of one request fire
   * their loaders in the same tick.
   */
  override query(...args: unknown[]): any {
    const client = this.held;
    if (!client) return Promise.reject(new Error("request slot used without its connection"));
    const run = this.tail.then(() => (client.query as (...a: unknown[]) => Promise<unknown>)(...args));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /**
   * Prisma runs a batch of unique lookups it cannot merge into one query
   * (several User nodes: the tenant scope adds an OR to each) as a batch
   * transaction, which asks the pool for a connection. There is no second
   * connection: the request's transaction is already open on the held one,
   * so the batch runs there, as a savepoint (BEGIN, COMMIT and ROLLBACK
   * become SAVEPOINT, RELEASE and ROLLBACK TO; an isolation level stays the
   * request transaction's).
   */
  override connect(): any {
    if (!this.held) return Promise.reject(new Error("request slot used without its connection"));
    const name = `prisma_batch_${++this.batches}`;
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
          ? this.query(statement(config), ...rest)
          : config && typeof config === "object" && typeof (config as { text?: unknown }).text === "string"
            ? this.query({ ...(config as object), text: statement((config as { text: string }).text) }, ...rest)
            : this.query(config, ...rest),
      on: () => nested,
      removeListener: () => nested,
      release: () => {},
    };
    return Promise.resolve(nested);
  }
  private batches = 0;
}

export interface RequestSlot {
  pool: SlotPool;
  prisma: PrismaClient;
}

export class RequestSlots {
  private readonly idle: RequestSlot[] = [];
  private readonly waiting: ((slot: RequestSlot) => void)[] = [];
  private created = 0;
  private readonly all: RequestSlot[] = [];

  constructor(
    /** The app pool the slots' connections come from. */
    readonly pool: pg.Pool,
    /** How many slots there can be. */
    readonly max: number,
    private readonly acquireTimeoutMs = 10_000,
  ) {}

  acquire(): Promise<RequestSlot> {
    const slot = this.idle.pop();
    if (slot) return Promise.resolve(slot);
    if (this.created < this.max) {
      this.created++;
      const pool = new SlotPool({ max: 1 });
      const created = { pool, prisma: new PrismaClient({ adapter: new PrismaPg(pool) }) };
      this.all.push(created);
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
    else this.idle.push(slot);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.all.map((s) => s.prisma.$disconnect()));
  }
}

/** The request slots of the app PrismaClient made by createDatabases (for TenantDb). */
const slotsOfClient = new WeakMap<PrismaClient, RequestSlots>();
export const requestSlotsOf = (client: PrismaClient) => slotsOfClient.get(client);
export const registerRequestSlots = (client: PrismaClient, slots: RequestSlots) => void slotsOfClient.set(client, slots);
