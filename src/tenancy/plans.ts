import type { Plan, QuotaResource } from "../generated/prisma/enums.ts";

const MB = 1024 * 1024;
const GB = 1024 * MB;

/** SPEC section 6 and 10: default limits per plan (null = unlimited); STORAGE_BYTES in bytes (MB = 2^20). */
export const PLAN_LIMITS: Record<Plan, Record<QuotaResource, number | null>> = {
  FREE: { API_REQUESTS_PER_MINUTE: 100, DEPLOYMENTS_PER_HOUR: 10, WORKFLOWS_PER_HOUR: 5, SEATS: 5, PROJECTS: 3, SUBSCRIPTIONS: 10, STORAGE_BYTES: 100 * MB },
  PRO: { API_REQUESTS_PER_MINUTE: 1000, DEPLOYMENTS_PER_HOUR: 100, WORKFLOWS_PER_HOUR: 50, SEATS: 50, PROJECTS: 100, SUBSCRIPTIONS: 100, STORAGE_BYTES: 10 * GB },
  ENTERPRISE: {
    API_REQUESTS_PER_MINUTE: 10000,
    DEPLOYMENTS_PER_HOUR: 1000,
    WORKFLOWS_PER_HOUR: 500,
    SEATS: null,
    PROJECTS: null,
    SUBSCRIPTIONS: 1000,
    STORAGE_BYTES: null,
  },
};

/** Per-plan statement_timeout in ms (0 = none), so one tenant cannot hold the pool. */
export const PLAN_STATEMENT_TIMEOUT_MS: Record<Plan, number> = { FREE: 5_000, PRO: 30_000, ENTERPRISE: 0 };

/** A tenant's limits: its plan's, replaced per resource by its overrides. */
export function effectiveLimits(
  plan: Plan,
  overrides: { resource: QuotaResource; limit: number | null }[],
): Record<QuotaResource, number | null> {
  const limits = { ...PLAN_LIMITS[plan] };
  for (const o of overrides) limits[o.resource] = o.limit;
  return limits;
}
