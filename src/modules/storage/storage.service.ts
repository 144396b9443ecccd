import type { PrismaClient } from "../../generated/prisma/client.ts";
import type { Logger } from "../../infra/logger.ts";

/**
 * Storage per tenant (SPEC section 10, issue 18 point 5; docs/tenant-config.md).
 *
 * What a tenant stores is the sum of `pg_column_size` of its rows (the row
 * as PostgreSQL stores it: compressed and TOASTed values count as stored)
 * over every tenant table, plus its own `tenants` row. It is measured in the
 * background, never per request: one aggregate statement over all tenants
 * that writes `tenants.storage_bytes` and `storage_measured_at`. Every
 * replica runs the refresher; a transaction-level advisory lock and the
 * stored measurement time make the measurement run at most once per
 * interval across all of them. The request path reads the stored value with
 * its authorization facts (app_request_facts), and mutations that can add
 * data are refused with QUOTA_EXCEEDED past the plan's STORAGE_BYTES
 * (src/policy/enforcer.ts).
 */

/** The tenant tables whose rows count, with their tenant column. */
const TENANT_TABLES = ["projects", "deployments", "workflows", "memberships", "api_keys", "audit_log", "usage_counters", "tenant_limit_overrides"];

const MEASURE_SQL = `
  WITH sizes AS (
    ${TENANT_TABLES.map((t) => `SELECT tenant_id, sum(pg_column_size(x.*))::float8 AS bytes FROM "${t}" x GROUP BY tenant_id`).join("\n    UNION ALL ")}
    UNION ALL SELECT id, sum(pg_column_size(x.*))::float8 FROM "tenants" x GROUP BY id
  ),
  totals AS (SELECT tenant_id, sum(bytes) AS bytes FROM sizes GROUP BY tenant_id)
  UPDATE "tenants" t SET storage_bytes = totals.bytes, storage_measured_at = statement_timestamp()
  FROM totals WHERE totals.tenant_id = t.id
  RETURNING t.id::text AS id, t.storage_bytes AS bytes`;

export interface StorageRefresh {
  /** Whether this call measured (false: another replica did within the interval, or holds the lock). */
  measured: boolean;
  /** Every tenant's stored bytes after the call. */
  tenants: { id: string; bytes: number }[];
  /** Duration of the measuring statement, ms (0 when not measured). */
  measureMs: number;
}

/**
 * Measures every tenant's storage when the last measurement is older than
 * `minAgeMs` (or a tenant was never measured) and no other replica is
 * measuring; else reads the stored values.
 */
export async function refreshStorage(platform: PrismaClient, opts: { minAgeMs: number }): Promise<StorageRefresh> {
  const minAge = Math.max(0, Math.floor(opts.minAgeMs));
  return platform.$transaction(
    async (tx) => {
      const [lock] = await tx.$queryRaw<{ locked: boolean }[]>`SELECT pg_try_advisory_xact_lock(hashtext('tenantgraph:storage-measurement')) AS locked`;
      const [state] = await tx.$queryRaw<{ due: boolean | null }[]>`
        SELECT bool_or(storage_measured_at IS NULL OR storage_measured_at < statement_timestamp() - make_interval(secs => ${minAge / 1000}::float8)) AS due
        FROM tenants`;
      if (lock?.locked && state?.due) {
        const started = performance.now();
        const rows = await tx.$queryRawUnsafe<{ id: string; bytes: number }[]>(MEASURE_SQL);
        return { measured: true, tenants: rows.map((r) => ({ id: r.id, bytes: Number(r.bytes) })), measureMs: performance.now() - started };
      }
      const rows = await tx.$queryRaw<{ id: string; bytes: number }[]>`SELECT id::text AS id, storage_bytes AS bytes FROM tenants`;
      return { measured: false, tenants: rows.map((r) => ({ id: r.id, bytes: Number(r.bytes) })), measureMs: 0 };
    },
    { maxWait: 5_000, timeout: 300_000 },
  );
}

/**
 * The background refresher of one process: refreshStorage every
 * `intervalMs` (the first run at start), the values handed to `onValues`
 * (the per-tenant metric). A failure is logged and retried at the next tick.
 */
export class StorageRefresher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly opts: {
      platform: PrismaClient;
      intervalMs: number;
      logger: Logger;
      onValues?: (tenants: { id: string; bytes: number }[]) => void;
    },
  ) {}

  /** One refresh now (also what each tick does). */
  tick(): Promise<void> {
    this.running ??= (async () => {
      try {
        const r = await refreshStorage(this.opts.platform, { minAgeMs: this.opts.intervalMs });
        this.opts.onValues?.(r.tenants);
        if (r.measured) this.opts.logger.info({ tenants: r.tenants.length, ms: Math.round(r.measureMs) }, "tenant storage measured");
      } catch (err) {
        this.opts.logger.warn({ err }, "tenant storage measurement failed");
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  start(): void {
    if (this.timer) return;
    void this.tick();
    this.timer = setInterval(() => void this.tick(), this.opts.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
