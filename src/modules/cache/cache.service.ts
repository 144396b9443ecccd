import { syncPlacedTenant } from "../platform/placement.service.ts";
import { refuseWhileMoving } from "../../tenancy/placement-directory.ts";
import { Prisma } from "../../generated/prisma/client.ts";
import { notFound } from "../../errors.ts";
import { clearResponseCache } from "../../infra/response-cache.ts";
import { crossTenant, platformStore } from "../../policy/platform.ts";
import type { Context } from "../../tenancy/context.ts";

/**
 * `clearTenantCache` (SPEC section 10, docs/response-cache.md): a platform
 * operation on one tenant, audited like the others (crossTenant() writes the
 * platform entry and the tenant's own, in the same transaction). The
 * tenant's generation is bumped in that transaction, so from its commit on
 * no replica addresses an entry cached before; then the entries are deleted
 * from the store by the tenant's key prefix (best effort: unreachable anyway).
 */
export async function clearTenantCache(ctx: Context, tenantId: string, metadata: unknown) {
  const tenant = await crossTenant(ctx, { action: "tenant.clearCache", tenantIds: [tenantId], metadata }, async (tx, placements) => {
    const current = await tx.tenant.findUnique({ where: { id: tenantId } });
    if (!current) throw notFound("Tenant");
    // Like every platform change: refused while a move holds the fence (the generation would be bumped in the copy being left).
    await refuseWhileMoving(tx, tenantId);
    await tx.$executeRaw(Prisma.sql`SELECT app_bump_cache_generations(ARRAY[${tenantId}::uuid])`);
    // A placed tenant's generation is its placement's (docs/placement.md).
    await syncPlacedTenant(placements, tx, current);
    return current;
  });
  await clearResponseCache(platformStore(ctx), tenantId);
  return tenant;
}
