import type { PrismaClient } from "../generated/prisma/client.ts";
import { placementPoolsOf } from "../db/clients.ts";
import { syncToDirectory } from "../db/placement-sync.ts";
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
