import { Prisma, type PrismaClient } from "../generated/prisma/client.ts";
import type { Logger } from "./logger.ts";
import { isStoreUnavailable, tenantKey, type Store } from "./store.ts";

/**
 * API requests per tenant per hour (`Platform.tenantUsage.apiRequests`):
 * each tenant-scoped request adds one to `t:{<tenant>}:req:<hour>` in the
 * shared store; every `intervalMs` and at shutdown the flusher writes the
 * totals of the tenant-hours it saw (after a restart: every tenant's current
 * and previous hour) to `usage_counters` in one idempotent statement,
 * app_request_counts_flush(). A count the store cannot take is buffered in
 * the process until it can. Design, idempotency and locks: docs/database.md,
 * "API request counts"; degraded mode: docs/degraded-modes.md.
 */

export const REQUEST_RESOURCE = "API_REQUESTS_PER_MINUTE" as const;
const HOUR_MS = 3_600_000;
/** Store keys live two hours: the hour itself plus one for late flushes. */
const RETAIN_MS = 2 * HOUR_MS;
const READ_CHUNK = 500;

export const hourStart = (at: number) => Math.floor(at / HOUR_MS) * HOUR_MS;
export const requestCounterKey = (tenantId: string, hour: number) => tenantKey(tenantId, "req", String(hour));

export interface RequestCounterOptions {
  /** The platform client: flushes write several tenants' rows. */
  db: PrismaClient;
  store: Store;
  /** @default 10_000 */
  intervalMs?: number;
  logger?: Logger;
  now?: () => number;
}

export class RequestCounter {
  private readonly db: PrismaClient;
  private readonly store: Store;
  private readonly intervalMs: number;
  private readonly logger?: Logger;
  private readonly now: () => number;
  /** `<tenantId>|<hourStartMs>` seen since the last flush. */
  private dirty = new Set<string>();
  /** Counts the store could not take, by `<tenantId>|<hourStartMs>`. */
  private buffered = new Map<string, number>();
  private swept = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<number> | undefined;

  constructor(opts: RequestCounterOptions) {
    this.db = opts.db;
    this.store = opts.store;
    this.intervalMs = opts.intervalMs ?? 10_000;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
  }

  /** Counts one request of `tenantId` (by = more than one, for tests and batches). */
  async record(tenantId: string, by = 1): Promise<void> {
    const hour = hourStart(this.now());
    const entry = `${tenantId}|${hour}`;
    this.dirty.add(entry);
    try {
      await this.store.hit(requestCounterKey(tenantId, hour), RETAIN_MS, by);
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      this.buffered.set(entry, (this.buffered.get(entry) ?? 0) + by);
    }
  }

  /** Counts held in the process because the store was unavailable. */
  get bufferedCount(): number {
    let n = 0;
    for (const v of this.buffered.values()) n += v;
    return n;
  }

  /** Hands buffered counts to the store; false when it is still unavailable. */
  private async replay(): Promise<boolean> {
    for (const [entry, by] of [...this.buffered]) {
      const [tenantId, hour] = entry.split("|") as [string, string];
      try {
        await this.store.hit(requestCounterKey(tenantId, Number(hour)), RETAIN_MS, by);
      } catch (err) {
        if (isStoreUnavailable(err)) return false;
        throw err;
      }
      // Counts recorded meanwhile stay for the next replay.
      const left = (this.buffered.get(entry) ?? 0) - by;
      if (left > 0) this.buffered.set(entry, left);
      else this.buffered.delete(entry);
    }
    return true;
  }

  /** Writes the totals of the pending tenant-hours; returns the rows written. */
  flush(final = false): Promise<number> {
    // One flush at a time per process; a caller arriving during one waits for it and starts its own.
    const run = (this.flushing ?? Promise.resolve(0)).catch(() => 0).then(() => this.flushOnce(final));
    this.flushing = run;
    return run;
  }

  private async flushOnce(final: boolean): Promise<number> {
    if (!(await this.replay())) {
      if (!final) return 0;
      // Shutting down with the store unavailable: the buffer would die with the process.
      const rows = [...this.buffered].map(([entry, count]) => {
        const [tenantId, hour] = entry.split("|") as [string, string];
        return { tenantId, hour: Number(hour), count };
      });
      this.buffered.clear();
      if (rows.length) await this.write(rows, "add");
      return rows.length;
    }
    const pending = this.dirty;
    this.dirty = new Set();
    try {
      const entries = new Set(pending);
      if (!this.swept) {
        // After a restart: what a previous process counted but never flushed.
        const current = hourStart(this.now());
        const tenants = await this.db.tenant.findMany({ select: { id: true } });
        for (const t of tenants) {
          entries.add(`${t.id}|${current}`);
          entries.add(`${t.id}|${current - HOUR_MS}`);
        }
      }
      const rows = await this.readTotals([...entries]);
      const skipped = rows.length ? await this.write(rows) : new Set<string>();
      // Tenants whose total row was held: their totals are still in the store, for the next flush.
      for (const r of rows) if (skipped.has(r.tenantId)) this.dirty.add(`${r.tenantId}|${r.hour}`);
      this.swept = true;
      return rows.filter((r) => !skipped.has(r.tenantId)).length;
    } catch (err) {
      // Try again next time: the totals are still in the store.
      for (const e of pending) this.dirty.add(e);
      throw err;
    }
  }

  private async readTotals(entries: string[]) {
    const rows: { tenantId: string; hour: number; count: number }[] = [];
    for (let i = 0; i < entries.length; i += READ_CHUNK) {
      const chunk = entries.slice(i, i + READ_CHUNK).map((e) => {
        const [tenantId, hour] = e.split("|") as [string, string];
        return { tenantId, hour: Number(hour) };
      });
      const values = await Promise.all(chunk.map((c) => this.store.get(requestCounterKey(c.tenantId, c.hour))));
      chunk.forEach((c, j) => {
        const count = Number(values[j] ?? 0);
        if (count > 0) rows.push({ ...c, count });
      });
    }
    return rows;
  }

  /**
   * One statement for the whole batch (app_request_counts_flush: the hourly
   * rows and the tenants' totals); tenants purged meanwhile are dropped.
   * "total": the counts are the store's running totals (idempotent), and a
   * tenant whose total row another transaction holds is skipped (answered);
   * "add": increments (shutdown with the store down), waiting for such a row
   * up to the function's lock_timeout instead.
   */
  private async write(rows: { tenantId: string; hour: number; count: number }[], mode: "total" | "add" = "total"): Promise<Set<string>> {
    const ids = rows.map((r) => r.tenantId);
    const windows = rows.map((r) => new Date(r.hour).toISOString());
    const counts = rows.map((r) => r.count);
    const [res] = await this.db.$queryRaw<{ skipped: string[] }[]>(Prisma.sql`
      SELECT app_request_counts_flush(${ids}::uuid[], ${windows}::timestamptz[], ${counts}::int[], ${mode === "add"})::text[] AS skipped`);
    return new Set(res?.skipped ?? []);
  }

  /** Flushes every `intervalMs` until stop(). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.flush().catch((err: unknown) => {
        // The store logs its own unavailability once; no line every interval.
        if (!isStoreUnavailable(err)) this.logger?.warn({ err }, "request counter flush failed");
      });
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and flushes what is pending (graceful shutdown). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush(true);
  }
}
