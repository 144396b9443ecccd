import pg from "pg";
import { ClientGone, TimeShare, type TimeShareOptions } from "./time-share.ts";

/**
 * A tier pool: every checkout (`connectFor(tenant)`, `connect()`, and
 * `query()`, which checks out through it) first passes the pool's gate
 * (src/db/time-share.ts): its turn by tenant, the tenant's cap if it has
 * one, and the plan's share of database time if it has one; a share's
 * connection time is spent from the moment a connection is handed out until
 * it is released. The gate admits no more than `max` at once, so pg's own
 * (first come first served) queue stays empty and every wait is in the
 * gate's, counted by `waitingCount` like pg's (the pool gauges keep their
 * meaning). Checkouts that name no tenant (Prisma's own, the /export
 * stream's statements) share one lane, as one more tenant.
 */
export class TierPool extends pg.Pool {
  readonly timeShare: TimeShare;

  constructor(config: pg.PoolConfig & { max: number }, gate: Omit<TimeShareOptions, "max">) {
    super(config);
    this.timeShare = new TimeShare({ ...gate, max: config.max });
  }

  /**
   * A connection for `tenant`'s request, its turn taken among the tier's
   * tenants. `signal`: the request's client; once it has gone the request
   * leaves the queue (or never joins it) and takes no connection.
   */
  connectFor(tenant: string, signal?: AbortSignal): Promise<pg.PoolClient> {
    return this.checkout(tenant, signal);
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(callback: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void): void;
  override connect(callback?: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void): Promise<pg.PoolClient> | void {
    const checkout = this.checkout("");
    if (!callback) return checkout;
    checkout.then(
      (client) => callback(undefined, client, (err) => client.release(err as Error | undefined)),
      (err: Error) => callback(err, undefined, () => {}),
    );
  }

  private async checkout(tenant: string, signal?: AbortSignal): Promise<pg.PoolClient> {
    if (signal?.aborted) throw new ClientGone();
    // Nothing waiting and room: no wait of the gate's (no promise of its own).
    const done = this.timeShare.tryAcquire(tenant) ?? (await this.timeShare.acquire(tenant, signal));
    let client: pg.PoolClient;
    try {
      client = await super.connect();
    } catch (err) {
      done();
      throw err;
    }
    if (signal?.aborted) {
      // Gone while a new connection was being opened: it goes back unused, to the next waiter.
      client.release();
      done();
      throw new ClientGone();
    }
    // pg sets `release` anew at every checkout: this one also ends the connection's time.
    const release = client.release.bind(client);
    client.release = (err?: Error | boolean) => {
      done();
      release(err);
    };
    return client;
  }

  override end(): Promise<void> {
    this.timeShare.close(new Error("Cannot use a pool after calling end on the pool"));
    return super.end();
  }
}

// pg-pool's waitingCount is a getter (the typings call it a property): the
// share's queue added, so /metrics' `waiting` and the idle eviction see it.
function getterOf(proto: object | null, name: string): () => unknown {
  for (let p = proto; p; p = Object.getPrototypeOf(p)) {
    const get = Object.getOwnPropertyDescriptor(p, name)?.get;
    if (get) return get;
  }
  throw new Error(`pg.Pool has no ${name} getter`);
}
const pgWaiting = getterOf(pg.Pool.prototype, "waitingCount");
Object.defineProperty(TierPool.prototype, "waitingCount", {
  get(this: TierPool) {
    return (pgWaiting.call(this) as number) + this.timeShare.waiting;
  },
});

/** The time share of a pool, if it has one. */
export const timeShareOf = (pool: pg.Pool): TimeShare | undefined => (pool instanceof TierPool && pool.timeShare.bounded ? pool.timeShare : undefined);

/**
 * A connection of `pool` for `tenant`'s request: its turn among the tier's
 * tenants on a tier pool, pg's queue on another. `signal`: the request's
 * client (Yoga's `request.signal`): a request whose client has gone leaves
 * the tier pool's queue and never takes a connection, so what it would
 * have run never starts (docs/request-path.md, "A client that goes away").
 */
export const connectFor = (pool: pg.Pool, tenant: string, signal?: AbortSignal): Promise<pg.PoolClient> =>
  pool instanceof TierPool ? pool.connectFor(tenant, signal) : pool.connect();
