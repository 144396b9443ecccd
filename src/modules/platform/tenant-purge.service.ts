import { badInput, notFound, tenantMoving } from "../../errors.ts";
import { moveLockSql } from "../../db/placement-fence.ts";
import { dropMoveLeftovers } from "../../db/placement-move.ts";
import { isStoreUnavailable } from "../../infra/store.ts";
import { crossTenant, platformDirectory, platformStore } from "../../policy/platform.ts";
import type { Context } from "../../tenancy/context.ts";
import { refuseWhileMoving } from "../../tenancy/placement-directory.ts";
import { placementIn } from "./placement.service.ts";
import { existingTenant } from "./tenant-lifecycle.service.ts";

/**
 * Removes every row of a PENDING_DELETION tenant in one transaction (children
 * first, explicitly, then the tenant row, whose cascades catch any table
 * added later), then every store key `t:{<id>}:*` (SCAN, never KEYS), the
 * slug and API key cache entries. Users stay: they are global identities
 * that may belong to other tenants. The platform audit log keeps the record.
 *
 * A placed tenant's schema or database, and whatever a crashed or failed
 * move of it left, are dropped INSIDE that transaction, last, before it
 * commits (docs/placement.md, "Purge"): a drop that fails (a placement
 * server down) fails the purge with nothing changed, and the purge can be
 * called again. Only the COMMIT can fail after the drops: the tenant then
 * stays PENDING_DELETION (refused) with its placement gone, and a second
 * purge completes (the drops are IF EXISTS). The tenant's row is locked
 * first, so no reactivation can commit between the drop and the purge.
 *
 * A move of the tenant under way refuses the purge (TENANT_MOVING, retry):
 * the purge takes the tenant's move lock for its transaction, so it never
 * runs beside a move outside its write fence (settling earlier moves,
 * making the target, dropping the old copy), which would make or leave a
 * copy of the rows the purge deletes; and no move starts until it is done.
 */
export async function purgeTenant(ctx: Context, tenantId: string, metadata: unknown) {
  await existingTenant(ctx, tenantId);
  const { slug, hashes } = await crossTenant(ctx, { action: "tenant.purge", tenantIds: [tenantId], metadata }, async (tx, platformPlacements) => {
    const placements = platformPlacements();
    await refuseWhileMoving(tx, tenantId);
    const [lock] = await tx.$queryRawUnsafe<{ held: boolean }[]>(`SELECT pg_try_advisory_xact_lock(${moveLockSql("$1::text")}) AS held`, tenantId);
    if (!lock?.held) throw tenantMoving();
    await tx.$queryRawUnsafe(`SELECT 1 FROM tenants WHERE id = $1::uuid FOR UPDATE`, tenantId);
    const placement = await placementIn(tx, tenantId);
    const tenant = await tx.tenant.findUnique({ where: { id: tenantId } });
    if (!tenant) throw notFound("Tenant");
    if (tenant.status !== "PENDING_DELETION") {
      throw badInput("tenantId", "Only tenants pending deletion can be purged: scheduleTenantDeletion first");
    }
    const keys = await tx.apiKey.findMany({ where: { tenantId }, select: { secretHash: true, previousSecretHash: true } });
    const where = { tenantId };
    // The request total's row first, then the request rows: the order of the
    // request counter's flush (migration 20261202007000_tenant_stats_locks),
    // which then skips this tenant instead of deadlocking with the purge.
    await tx.tenantRequestTotals.deleteMany({ where });
    await tx.usageCounter.deleteMany({ where });
    await tx.deployment.deleteMany({ where });
    await tx.workflow.deleteMany({ where });
    await tx.project.deleteMany({ where });
    await tx.apiKey.deleteMany({ where });
    await tx.membership.deleteMany({ where });
    await tx.tenantLimitOverride.deleteMany({ where });
    await tx.auditLogEntry.deleteMany({ where });
    await tx.tenant.delete({ where: { id: tenantId } });
    // Last before the COMMIT: the placement (its pools closed first), then
    // anything a crashed or failed move of the tenant left (a half-made
    // target, a staging schema): no copy of its rows stays. A failure here
    // rolls the purge back.
    if (placement) await placements.forget(placement);
    if (placement) await placements.admin.drop(placement);
    await dropMoveLeftovers(placements.admin, tenantId);
    return { slug: tenant.slug, hashes: keys.flatMap((k) => [k.secretHash, k.previousSecretHash]) };
  });
  // The purge has committed: with the store down its keys are left to expire
  // (every one has a TTL), rather than answering an error for a done purge.
  await platformStore(ctx).deletePattern(`t:{${tenantId}}:*`).catch((err: unknown) => {
    if (!isStoreUnavailable(err)) throw err;
  });
  await platformDirectory(ctx).invalidateTenant(tenantId, slug);
  await platformDirectory(ctx).invalidateApiKeyHashes(...hashes);
  return { purgedTenantId: tenantId, slug };
}
