import { createHash } from "node:crypto";
import { countUsage, lockCountQuota } from "../db/count-quota.ts";
import { NoSeatLeft } from "../db/placement-sync.ts";
import { POOLED } from "../db/placement-admin.ts";
import type { ContextDeps } from "./context-types.ts";
import type { Directory, TenantInfo, UserInfo } from "./directory.ts";
import { directoryPlacement, placeNewMember, refuseWhileMoving } from "./placement-directory.ts";
import { TenantIdentityProviders, type TenantIdpToken } from "./tenant-idp.ts";

/**
 * The first login of a provider subject the platform does not know yet:
 * a user whose auth_subject is `<issuer>#<sub>` (an e-mail of its own under
 * .invalid, the token's `email` claim as its name) becomes a VIEWER of the
 * provider's tenant, within its SEATS, under the lock inviteMember takes.
 * A subject known already is never given a membership here: one removed by
 * an ADMIN stays removed. Null: no seat left, or `sso` withdrawn.
 *
 * The seats are counted where the tenant's memberships are authoritative:
 * a POOLED tenant's in the main database, a placed tenant's in its placement
 * (src/db/placement-sync.ts syncMemberToPlacement, under the SEATS lock
 * there), never in the directory's copy, which may be stale.
 */
export async function provisionProviderUser(deps: Pick<ContextDeps, "app" | "platform" | "directory">, own: TenantIdpToken, tenant: TenantInfo): Promise<UserInfo | null> {
  if (!tenant.features.includes("sso")) return null;
  const email = `${createHash("sha256").update(own.subject, "utf8").digest("hex").slice(0, 32)}@sso.invalid`;
  const select = { id: true, email: true, name: true, authSubject: true, isPlatformAdmin: true } as const;
  const seats = tenant.limits.SEATS;
  const user = await deps.platform
    .$transaction(async (tx) => {
      // One first login of the tenant's at a time (two of one subject: the second finds the first's user).
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`${tenant.id}:sso-first-login`}))`;
      const existing = await tx.user.findUnique({ where: { authSubject: own.subject }, select });
      if (existing) return existing;
      // A write of the tenant's: never during a move of it (docs/placement.md, "Moving a tenant"); the
      // directory row's placement then stays what it is until this commits.
      await refuseWhileMoving(tx, tenant.id);
      const placement = (await directoryPlacement(tx, tenant.id)) ?? POOLED;
      if (placement.placement === "POOLED") {
        await lockCountQuota((sql, params) => tx.$executeRawUnsafe(sql, ...params), tenant.id, "SEATS");
        if (seats !== null && (await countUsage((sql, params) => tx.$queryRawUnsafe(sql, ...params), tenant.id, "SEATS")) >= seats) return null;
      }
      const created = await tx.user.create({ data: { email, name: own.email ?? own.token.sub.slice(0, 200), authSubject: own.subject }, select });
      await tx.membership.create({ data: { tenantId: tenant.id, userId: created.id, role: "VIEWER" } });
      // A placed tenant's requests are decided in its placement: the member is written there, its seats counted there, before this commits.
      await placeNewMember(deps.app, tenant.id, created.id, tx, placement, seats);
      return created;
    })
    .catch((err: unknown) => {
      if (err instanceof NoSeatLeft) return null;
      throw err;
    });
  if (user) await Promise.all([deps.directory.invalidateUser(own.subject), deps.directory.invalidateMembership(tenant.id, user.id)]);
  return user;
}

const idpsOf = new WeakMap<Directory, TenantIdentityProviders>();
/** The deps' tenant identity providers (one per directory when the app made none). */
export function tenantIdps(deps: Pick<ContextDeps, "tenantIdps" | "directory">): TenantIdentityProviders {
  if (deps.tenantIdps) return deps.tenantIdps;
  let idps = idpsOf.get(deps.directory);
  if (!idps) idpsOf.set(deps.directory, (idps = new TenantIdentityProviders(deps.directory)));
  return idps;
}

