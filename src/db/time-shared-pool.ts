import pg from "pg";
import { TimeShare, type TimeShareOptions } from "./time-share.ts";

/**
 * A tier pool bounded by its share of database time (src/db/time-share.ts)
 * as well as by its size: every checkout (`connect()`, and `query()`, which
 * checks out through it) first waits for the share, and the connection's
 * time is spent from the moment it is handed out until it is released.
 * The gate also admits no more than `max` at once, so pg's own queue stays
 * empty and every wait is in the share's queue, counted by `waitingCount`
 * like pg's (the pool gauges keep their meaning).
 */
export class TimeSharedPool extends pg.Pool {
  readonly timeShare: TimeShare;

  constructor(config: pg.PoolConfig & { max: number }, share: Omit<TimeShareOptions, "max">) {
    super(config);
    this.timeShare = new TimeShare({ ...share, max: config.max });
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(callback: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void): void;
  override connect(callback?: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void): Promise<pg.PoolClient> | void {
    const checkout = this.checkout();
    if (!callback) return checkout;
    checkout.then(
      (client) => callback(undefined, client, (err) => client.release(err as Error | undefined)),
      (err: Error) => callback(err, undefined, () => {}),
    );
  }

  private async checkout(): Promise<pg.PoolClient> {
    const done = await this.timeShare.acquire();
    let client: pg.PoolClient;
    try {
      client = await super.connect();
    } catch (err) {
      done();
      throw err;
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
Object.defineProperty(TimeSharedPool.prototype, "waitingCount", {
  get(this: TimeSharedPool) {
    return (pgWaiting.call(this) as number) + this.timeShare.waiting;
  },
});

/** The time share of a pool, if it has one. */
export const timeShareOf = (pool: pg.Pool): TimeShare | undefined => (pool instanceof TimeSharedPool ? pool.timeShare : undefined);
