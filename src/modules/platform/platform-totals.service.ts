import { Prisma } from "../../generated/prisma/client.ts";
import type { Plan, TenantStatus } from "../../generated/prisma/enums.ts";
import { REQUEST_RESOURCE } from "../../infra/request-counter.ts";
import type { PlatformTx } from "../../policy/platform.ts";
import { checkRange, isRanged, rangeOf, type Range } from "./analytics-range.ts";
import { NO_PLACED_COUNTS, type PlacedCounts } from "./placement-analytics.ts";

const PLANS: Plan[] = ["FREE", "PRO", "ENTERPRISE"];
const STATUSES: TenantStatus[] = ["ACTIVE", "SUSPENDED", "PENDING_DELETION"];

export interface PlatformTotals {
  tenants: number;
  tenantsByPlan: { plan: Plan; count: number }[];
  tenantsByStatus: { status: TenantStatus; count: number }[];
  members: number;
  projects: number;
  deployments: number;
  apiRequests: number;
}

/**
 * Platform-wide totals in one statement: one pass over the tenants (plan and
 * status) and one over their counters (one row per tenant, not their rows); with from/to, deployments and API
 * requests are counted over the range (the cost follows its rows).
 */
export async function totals(tx: PlatformTx, range: Range, placed: PlacedCounts = NO_PLACED_COUNTS): Promise<PlatformTotals> {
  checkRange(range);
  const ranged = isRanged(range);
  const [row] = await tx.$queryRaw<
    {
      tenants: number;
      by_plan: Record<string, number> | null;
      by_status: Record<string, number> | null;
      members: number;
      projects: number;
      deployments: number;
      api_requests: bigint;
    }[]
  >(Prisma.sql`
    WITH byp AS MATERIALIZED (SELECT plan, status, count(*)::int AS n FROM tenants GROUP BY plan, status)
    SELECT
      (SELECT coalesce(sum(n), 0)::int FROM byp) AS tenants,
      (SELECT jsonb_object_agg(plan, n) FROM (SELECT plan, sum(n)::int AS n FROM byp GROUP BY plan) x) AS by_plan,
      (SELECT jsonb_object_agg(status, n) FROM (SELECT status, sum(n)::int AS n FROM byp GROUP BY status) x) AS by_status,
      st.members, st.projects + ${placed.projects}::int AS projects,
      ${ranged ? Prisma.sql`(SELECT count(*)::int FROM deployments WHERE true ${rangeOf("created_at", range)})` : Prisma.sql`st.deployments`}
        + ${placed.deployments}::int AS deployments,
      ${
        ranged
          ? Prisma.sql`(SELECT coalesce(sum(count), 0)::bigint FROM usage_counters
        WHERE resource = ${REQUEST_RESOURCE}::"QuotaResource" ${rangeOf("window_start", range)})`
          : Prisma.sql`(SELECT coalesce(sum(api_requests), 0)::bigint FROM tenant_request_totals)`
      } AS api_requests
    FROM (SELECT coalesce(sum(members), 0)::int AS members, coalesce(sum(projects), 0)::int AS projects,
            coalesce(sum(deployments), 0)::int AS deployments
          FROM tenant_stats) st`);
  return {
    tenants: row!.tenants,
    tenantsByPlan: PLANS.map((plan) => ({ plan, count: Number(row!.by_plan?.[plan] ?? 0) })),
    tenantsByStatus: STATUSES.map((status) => ({ status, count: Number(row!.by_status?.[status] ?? 0) })),
    members: row!.members,
    projects: row!.projects,
    deployments: row!.deployments,
    apiRequests: Number(row!.api_requests),
  };
}
