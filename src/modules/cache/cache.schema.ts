import { builder } from "../../graphql/builder.ts";
import { tenantIdOf } from "../../graphql/ids.ts";
import { payloadType } from "../../graphql/payload.ts";
import { cacheHitRate } from "../../infra/response-cache.ts";
import { operationMetadata } from "../../policy/audit.ts";
import { TenantUsageStatsRef } from "../platform/platform.schema.ts";
import { platformStore } from "../../policy/platform.ts";
import { TenantRef } from "../tenants/tenant.schema.ts";
import * as service from "./cache.service.ts";

/**
 * The response cache's part of the schema (SPEC section 10,
 * docs/response-cache.md): the platform's `clearTenantCache` and
 * `TenantUsageStats.cacheHitRate`.
 */

const ClearTenantCacheInput = builder.inputType("ClearTenantCacheInput", {
  fields: (t) => ({ tenantId: t.id({ required: true }) }),
});
const ClearTenantCachePayload = payloadType("ClearTenantCachePayload", { tenant: { type: TenantRef } });

builder.mutationField("clearTenantCache", (t) =>
  t.field({
    type: ClearTenantCachePayload,
    description: "Empties the tenant's response cache on every replica (platform admins; audited).",
    directives: { crossTenant: {}, audit: { action: "tenant.clearCache" } },
    args: { input: t.arg({ type: ClearTenantCacheInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => ({
      tenant: (await service.clearTenantCache(
        ctx,
        tenantIdOf(input),
        operationMetadata(info, { input }),
      )),
    }),
  }),
);

builder.objectField(TenantUsageStatsRef, "cacheHitRate", (t) =>
  t.float({
    nullable: true,
    description: "Share of the tenant's cacheable reads answered from the response cache, over the current and the previous UTC day; null when none.",
    // A Platform.tenantUsage row's: admitted on its own (the path of tenantUsage ended when it returned).
    directives: { crossTenant: {} },
    resolve: (s, _args, ctx) => cacheHitRate(platformStore(ctx), s.tenant.id, ctx.now()),
  }),
);
