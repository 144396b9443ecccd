import { Prisma } from "../../generated/prisma/client.ts";
import { DeploymentStatus } from "../../generated/prisma/enums.ts";
import { badInput } from "../../errors.ts";
import type { Context } from "../../tenancy/context.ts";

/**
 * deploymentStats (SPEC section 10; docs/tenant-config.md): the tenant's
 * deployments per UTC day or hour of creation, with counts by status and
 * the median and 95th percentile of the time from QUEUED to READY where
 * both are known (`queued_at`, `ready_at`, kept by a trigger). One aggregate
 * statement on the request's transaction: row-level security and an
 * explicit tenant filter, like every read.
 */

export type StatsInterval = "DAY" | "HOUR";

export interface DeploymentStatsBucket {
  start: Date;
  byStatus: { status: DeploymentStatus; count: number }[];
  medianReadySeconds: number | null;
  p95ReadySeconds: number | null;
}

/** At most this many buckets per call (about 41 days of hours, 2.7 years of days). */
export const MAX_BUCKETS = 1_000;
const STEP_MS: Record<StatsInterval, number> = { DAY: 86_400_000, HOUR: 3_600_000 };
const STATUSES = Object.values(DeploymentStatus);

interface Row {
  start: Date;
  counts: Record<string, number> | null;
  median: number | null;
  p95: number | null;
}

export async function deploymentStats(ctx: Context, from: Date, to: Date, interval: StatsInterval): Promise<DeploymentStatsBucket[]> {
  if (Number.isNaN(from.getTime())) throw badInput("from", "from must be a date-time");
  if (Number.isNaN(to.getTime())) throw badInput("to", "to must be a date-time");
  if (to.getTime() <= from.getTime()) throw badInput("to", "to must be after from");
  if (!(interval in STEP_MS)) throw badInput("interval", "interval must be DAY or HOUR");
  if ((to.getTime() - from.getTime()) / STEP_MS[interval] > MAX_BUCKETS) {
    throw badInput("to", `at most ${MAX_BUCKETS} buckets per call: narrow from/to or use a larger interval`);
  }
  const tenantId = ctx.tenant!.id;
  const unit = interval === "DAY" ? "day" : "hour";
  const step = interval === "DAY" ? "1 day" : "1 hour";
  const rows = await ctx.tenantDb.queryRaw<Row>(Prisma.sql`
    WITH buckets AS (
      SELECT generate_series(date_trunc(${unit}, ${from}::timestamptz, 'UTC'), ${to}::timestamptz - interval '1 millisecond', ${step}::interval) AS start
    ),
    d AS (
      SELECT date_trunc(${unit}, created_at, 'UTC') AS start, status,
             CASE WHEN ready_at >= queued_at THEN extract(epoch FROM ready_at - queued_at)::float8 END AS secs
      FROM deployments
      WHERE tenant_id = ${tenantId}::uuid AND created_at >= ${from}::timestamptz AND created_at < ${to}::timestamptz
    ),
    per_status AS (
      SELECT start, jsonb_object_agg(status, n) AS counts FROM (SELECT start, status, count(*)::int AS n FROM d GROUP BY start, status) s GROUP BY start
    ),
    times AS (
      SELECT start,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) AS median,
             percentile_cont(0.95) WITHIN GROUP (ORDER BY secs) AS p95
      FROM d WHERE secs IS NOT NULL GROUP BY start
    )
    SELECT b.start, p.counts, t.median, t.p95
    FROM buckets b LEFT JOIN per_status p ON p.start = b.start LEFT JOIN times t ON t.start = b.start
    ORDER BY b.start`);
  return rows.map((r) => ({
    start: new Date(r.start),
    byStatus: STATUSES.map((status) => ({ status, count: Number(r.counts?.[status] ?? 0) })),
    medianReadySeconds: r.median === null ? null : Number(r.median),
    p95ReadySeconds: r.p95 === null ? null : Number(r.p95),
  }));
}
