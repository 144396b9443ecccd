import type { Plan, QuotaResource } from "../../generated/prisma/enums.ts";
import type { TenantContext } from "../../tenancy/context.ts";
import {
  HOUR_MS,
  MINUTE_MS,
  countUsage,
  limitOf,
  quotaWindowKey,
  windowStart,
  windowUsage,
} from "../../policy/quota.ts";
import { rateLimitWindowKey } from "../../infra/rate-limit.ts";

export interface QuotaUsage {
  resource: QuotaResource;
  limit: number | null;
  used: number;
  remaining: number | null;
  resetAt: Date | null;
}

export interface TenantUsage {
  plan: Plan;
  quotas: QuotaUsage[];
  /** Bytes of the tenant's rows as last measured (src/modules/storage/). */
  storageBytes: number;
  /** STORAGE_BYTES limit; null = unlimited. */
  storageLimitBytes: number | null;
}

const ORDER = ["API_REQUESTS_PER_MINUTE", "DEPLOYMENTS_PER_HOUR", "WORKFLOWS_PER_HOUR", "SEATS", "PROJECTS", "SUBSCRIPTIONS"] as const satisfies readonly QuotaResource[];

/**
 * Every quota of the current tenant: windows read from the shared store
 * (the rate limiter's minute counter includes this very request), counts in
 * one SQL statement.
 */
export async function tenantUsage(ctx: TenantContext): Promise<TenantUsage> {
  const tenant = ctx.tenant;
  const now = ctx.now();
  const [apiRequests, deployments, workflows, streams, counts] = await Promise.all([
    windowUsage(ctx.store, (tenantId) => rateLimitWindowKey(tenantId, now)),
    windowUsage(ctx.store, (tenantId) => quotaWindowKey(tenantId, "DEPLOYMENTS_PER_HOUR", now)),
    windowUsage(ctx.store, (tenantId) => quotaWindowKey(tenantId, "WORKFLOWS_PER_HOUR", now)),
    // Open subscription streams of the tenant, on every replica.
    ctx.live?.count() ?? 0,
    ctx.tenantDb.run(async (tx) => ({
      SEATS: await countUsage(tx, tenant.id, "SEATS"),
      PROJECTS: await countUsage(tx, tenant.id, "PROJECTS"),
    })),
  ]);
  const minuteReset = new Date(windowStart(MINUTE_MS, now) + MINUTE_MS);
  const hourReset = new Date(windowStart(HOUR_MS, now) + HOUR_MS);
  // STORAGE_BYTES is reported by storageBytes/storageLimitBytes (bytes
  // outgrow QuotaUsage's Int).
  const used: Record<(typeof ORDER)[number], [number, Date | null]> = {
    API_REQUESTS_PER_MINUTE: [apiRequests, minuteReset],
    DEPLOYMENTS_PER_HOUR: [deployments, hourReset],
    WORKFLOWS_PER_HOUR: [workflows, hourReset],
    SEATS: [counts.SEATS, null],
    PROJECTS: [counts.PROJECTS, null],
    SUBSCRIPTIONS: [streams, null],
  };
  return {
    plan: tenant.plan,
    storageBytes: tenant.storageBytes ?? 0,
    storageLimitBytes: limitOf(tenant, "STORAGE_BYTES"),
    quotas: ORDER.map((resource) => {
      const limit = limitOf(tenant, resource);
      const [n, resetAt] = used[resource];
      return { resource, limit, used: n, remaining: limit === null ? null : Math.max(0, limit - n), resetAt };
    }),
  };
}
