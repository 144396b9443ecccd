import type { PrismaClient } from "../generated/prisma/client.ts";
import { placementPoolsOf } from "../db/clients.ts";
import { syncMemberToPlacement, syncToDirectory } from "../db/placement-sync.ts";
import { moveFenceSql } from "../db/placement-fence.ts";
import { assertPlacementOf, placementOf, type PlacementRef } from "../db/placement-admin.ts";
import type { Placement } from "../generated/prisma/enums.ts";
import { tenantMoving } from "../errors.ts";
import type { Directory, TenantInfo } from "./directory.ts";

/**
 * For a placed tenant's mutation: once it committed in the placement, its
 * memberships, API keys, identities and identity provider go back to the
 * main database (src/db/placement-sync.ts), then the directory's cache
 * entries they change are evicted. Undefined for a POOLED tenant.
 *
 * A failure here never fails the mutation (it is committed and
 * acknowledged): the placement still decides every request (the facts are
 * read there), so a stale directory row can only refuse (a new member, a new
 * key) until the tenant's next change brings it up to date; it never grants.
 */
export function placedDirectorySync(app: PrismaClient, directory: Directory, tenant: TenantInfo): (() => Promise<void>) | undefined {
  const ref = tenant.placement;
  const placements = placementPoolsOf(app);
  if (!ref || ref.placement === "POOLED" || !placements) return undefined;
  return async () => {
    try {
      const changed = await syncToDirectory(placements.admin, ref, tenant.id);
      await Promise.all([
        ...changed.userIds.map((u) => directory.invalidateMembership(tenant.id, u)),
        ...changed.subjects.map((s) => directory.invalidateUser(s)),
        directory.invalidateApiKeyHashes(...changed.keyHashes),
        directory.invalidateTenant(tenant.id),
      ]);
    } catch {
      // See above: refused until the next change, never granted.
    }
  };
}

/** What runs SQL in the main database's transaction (a Prisma interactive transaction). */
type MainTx = Pick<PrismaClient, "$queryRawUnsafe">;

/**
 * A write of the tenant's made in the main database (a first SSO login's
 * membership) takes the move fence shared with a try, like every mutation:
 * refused with TENANT_MOVING while a move of the tenant holds it (the mover
 * holds it in the main database whatever the source), never written into a
 * copy being left.
 */
export async function refuseWhileMoving(tx: MainTx, tenantId: string): Promise<void> {
  const [row] = await tx.$queryRawUnsafe<{ ok: boolean }[]>(`SELECT pg_try_advisory_xact_lock_shared(${moveFenceSql("$1::text")}) AS ok`, tenantId);
  if (!row?.ok) throw tenantMoving();
}

/** The tenant's placement as the directory row says in the main database's transaction `tx` (never the cache's). */
export async function directoryPlacement(tx: MainTx, tenantId: string): Promise<PlacementRef | null> {
  const [row] = await tx.$queryRawUnsafe<{ placement: Placement; placementServer: string | null; placementName: string | null }[]>(
    `SELECT placement::text AS placement, placement_server AS "placementServer", placement_name AS "placementName" FROM tenants WHERE id = $1::uuid`,
    tenantId,
  );
  return row ? placementOf(row) : null;
}

/**
 * A member the main database's transaction `tx` just made for a placed
 * tenant (a first SSO login) is written into its placement (`ref`, as
 * directoryPlacement read it in `tx`) before `tx` commits: the placement
 * reads the request's facts, so without it the new member would be refused.
 * The tenant's SEATS (`seats`) are counted there, where its memberships
 * are authoritative: none left throws NoSeatLeft. A failure fails the login
 * (nothing committed in the main database). Nothing for a POOLED tenant.
 */
export async function placeNewMember(app: PrismaClient, tenantId: string, userId: string, tx: MainTx, ref: PlacementRef, seats: number | null): Promise<void> {
  if (ref.placement === "POOLED") return;
  assertPlacementOf(tenantId, ref);
  const placements = placementPoolsOf(app);
  if (!placements) throw new Error("no placement pools: a placed tenant's member cannot be made");
  await syncMemberToPlacement(placements.admin, ref, tenantId, userId, (sql, params) => tx.$queryRawUnsafe(sql, ...params), seats);
}
