import { builder } from "../../graphql/builder.ts";
import { PlanEnum, QuotaResourceEnum } from "../../graphql/enums.ts";
import { tenantUsage, type QuotaUsage, type TenantUsage } from "./usage.service.ts";

const QuotaUsageRef = builder.objectRef<QuotaUsage>("QuotaUsage").implement({
  fields: (t) => ({
    resource: t.field({ type: QuotaResourceEnum, resolve: (q) => q.resource }),
    limit: t.exposeInt("limit", { nullable: true, description: "null = unlimited." }),
    used: t.exposeInt("used"),
    remaining: t.exposeInt("remaining", { nullable: true }),
    resetAt: t.expose("resetAt", { type: "DateTime", nullable: true, description: "End of the current window; null for counts." }),
  }),
});

const TenantUsageRef = builder.objectRef<TenantUsage>("TenantUsage").implement({
  fields: (t) => ({
    plan: t.field({ type: PlanEnum, resolve: (u) => u.plan }),
    quotas: t.field({ type: [QuotaUsageRef], resolve: (u) => u.quotas }),
    storageBytes: t.exposeFloat("storageBytes", {
      description: "Bytes of the tenant's rows (pg_column_size), measured in the background every few minutes.",
    }),
    storageLimitBytes: t.exposeFloat("storageLimitBytes", { nullable: true, description: "The STORAGE_BYTES limit; null = unlimited." }),
  }),
});

builder.queryField("usage", (t) =>
  t.auth("ADMIN").field({
    type: TenantUsageRef,
    description: "The current tenant's quotas: limit, used, remaining, reset.",
    resolve: (_root, _args, ctx) => tenantUsage(ctx),
  }),
);
