import type { PrismaClient } from "../generated/prisma/client.ts";
import { assertPlacementOf, placementKey, placementOf } from "../db/placement-admin.ts";
import { placementSyncLockSql } from "../db/placement-sync.ts";
import { tenantMoving } from "../errors.ts";
import type { TenantInfo } from "./directory-types.ts";
import type { Placement } from "../generated/prisma/enums.ts";

/** A tenant's identity provider as stored (null: none). */
export interface IssuerClaim {
  issuer: string;
  jwksUrl: string;
  audience: string;
}

/**
 * A placed tenant's OWNER sets its identity provider (docs/placement.md,
 * "Issuers are claimed in the main database"): the main database's `tenants`
 * rows are the one registry of issuers (its unique index sees every tenant,
 * a placement's only its own), so the provider columns are written there
 * first, in a transaction of the main database that commits before the
 * tenant's own (the placement's), under the tenant's placement-sync lock.
 * An issuer another tenant holds fails with a unique violation (a
 * concurrent claim of the same issuer waits for the other's COMMIT, then
 * fails), which the caller answers as BAD_USER_INPUT on `issuer`. A tenant
 * whose directory row no longer names `tenant.placement` is being moved:
 * TENANT_MOVING. Nothing for a POOLED tenant (its own transaction writes the
 * main database's row).
 */
export async function claimIssuer(db: PrismaClient, tenant: TenantInfo, idp: IssuerClaim | null): Promise<void> {
  const ref = tenant.placement;
  if (!ref || ref.placement === "POOLED") return;
  assertPlacementOf(tenant.id, ref);
  await db.$transaction(async (tx) => {
    await tx.$queryRawUnsafe(`SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(${placementSyncLockSql("$1::text")})) l`, tenant.id);
    const [row] = await tx.$queryRawUnsafe<{ placement: Placement; placementServer: string | null; placementName: string | null }[]>(
      `SELECT placement::text AS placement, placement_server AS "placementServer", placement_name AS "placementName" FROM tenants WHERE id = $1::uuid`,
      tenant.id,
    );
    if (!row || placementKey(placementOf(row)) !== placementKey(ref)) throw tenantMoving();
    await tx.$executeRawUnsafe(
      `UPDATE tenants SET idp_issuer = $2, idp_jwks_url = $3, idp_audience = $4 WHERE id = $1::uuid`,
      tenant.id,
      idp?.issuer ?? null,
      idp?.jwksUrl ?? null,
      idp?.audience ?? null,
    );
  });
}
