import { Prisma } from "../../generated/prisma/client.ts";
import type { Role } from "../../generated/prisma/enums.ts";
import { badInput, notFound } from "../../errors.ts";
import { requireRole } from "../../policy/roles.ts";
import { writeAudit } from "../../policy/audit.ts";
import { checkDeclaredCountQuota } from "../../policy/enforcer.ts";
import type { TenantContext } from "../../tenancy/context.ts";
import type { IdentityRow } from "../../tenancy/directory.ts";
import type { ScopedTx } from "../../tenancy/scoped-client.ts";
import * as v from "../../graphql/validate.ts";
import { publishAfterCommit } from "../../infra/live-events.ts";

/**
 * Memberships. A change holds on the member's very next request on every
 * replica, although their JWT is still valid: PostgreSQL confirms each
 * request's membership and role (docs/revocation.md); the invalidation of
 * the cached membership (src/tenancy/directory.ts) keeps the cache close.
 * OWNER is special: only an OWNER grants or revokes it, and the last OWNER
 * can be neither demoted nor removed (checked under a per-tenant lock, so two
 * owners demoting each other at once cannot leave none).
 */

const requireOwnerFor = (ctx: TenantContext, what: string) => requireRole(ctx.role, "OWNER", `Only an OWNER can ${what}`);

/**
 * Adds the identity with this e-mail to the current tenant, creating it when
 * nobody has it yet, through the one definer function the app role has
 * (app_add_member, prisma/migrations/20261201001000_wall_global_tables): the
 * app role itself can neither write `users` nor look an e-mail up across
 * tenants.
 */
async function addMember(tx: ScopedTx, email: string, name: string | null, role: Role) {
  const rows = await tx.$queryRaw<{ membership_id: string; already_member: boolean }[]>`
    SELECT membership_id, already_member FROM app_add_member(${email}, ${name}, ${role}::"Role")`;
  return rows[0] ?? null;
}

/** A placed tenant's invitation: the global identity into its placement (app_place_identity, placements only; a plain user, never over an existing one). */
function placeIdentity(tx: ScopedTx, u: IdentityRow) {
  return tx.$executeRaw`SELECT app_place_identity(${u.id}::uuid, ${u.email}, ${u.name}, ${u.auth_subject}, ${u.created_at}::timestamptz)`;
}

/**
 * The membership to change, read under the tenant's owners lock: two
 * demotions or removals of the last two OWNERs cannot both pass the check
 * of `keepAnOwner`.
 */
async function lockedMembership(tx: ScopedTx, tenantId: string, membershipId: string) {
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`${tenantId}:owners`}))`;
  const current = await tx.membership.findFirst({ where: { id: membershipId } });
  if (!current) throw notFound("Membership");
  return current;
}

/** A tenant always keeps an OWNER: one may lose the role only while another has it. */
async function keepAnOwner(tx: ScopedTx, field: string, message: string) {
  const owners = await tx.membership.count({ where: { role: "OWNER" } });
  if (owners <= 1) throw badInput(field, message);
}

export async function inviteMember(ctx: TenantContext, input: { email: string; role: Role; name?: string | null }) {
  const tenantId = ctx.tenant.id;
  const email = input.email.trim().toLowerCase();
  if (input.role === "OWNER") requireOwnerFor(ctx, "grant OWNER");
  const name = input.name != null ? v.name("name", input.name) : null;
  // A placed tenant: the person's global identity, copied into its placement below (one person, one id).
  const identity = await ctx.directory.identityToPlace(ctx.tenant, email);
  const membership = await ctx.tenantDb
    .transaction(async (tx) => {
      // SEATS: counted and locked before the insert, in this transaction.
      await checkDeclaredCountQuota(tx, ctx, false);
      if (identity === "taken") throw badInput("email", "This e-mail cannot be invited");
      // In this transaction: a refused invitation rolls the copy back (docs/placement.md).
      if (identity) await placeIdentity(tx, identity);
      const added = await addMember(tx, email, name, input.role);
      if (!added) throw badInput("email", "This e-mail cannot be invited");
      if (added.already_member) throw badInput("email", `${email} is already a member`);
      const created = await tx.membership.findUniqueOrThrow({ where: { tenantId_id: { tenantId, id: added.membership_id } } });
      await writeAudit(tx, ctx, {
        targetType: "Membership",
        targetId: created.id,
        metadata: { input: { ...input, email } },
      });
      return created;
    })
    .catch((err: unknown) => {
      if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002") {
        throw badInput("email", `${email} is already a member`);
      }
      throw err;
    });
  await ctx.tenantDb.afterCommit(() =>
    Promise.all([
      ctx.directory.invalidateMembership(tenantId, membership.userId),
      // A lookup of the new subject may have cached "unknown" moments ago.
      ctx.directory.invalidateUser(email),
    ]),
  );
  return membership;
}

export async function updateMemberRole(ctx: TenantContext, membershipId: string, role: Role, input: unknown) {
  const tenantId = ctx.tenant.id;
  const updated = await ctx.tenantDb.transaction(async (tx) => {
    const current = await lockedMembership(tx, tenantId, membershipId);
    if (current.role === "OWNER" || role === "OWNER") requireOwnerFor(ctx, "grant or revoke OWNER");
    if (current.role === "OWNER" && role !== "OWNER") await keepAnOwner(tx, "role", "The last OWNER cannot be demoted");
    const row = await tx.membership.update({
      where: { tenantId_id: { tenantId, id: membershipId } },
      data: { role },
    });
    await writeAudit(tx, ctx, {
      targetType: "Membership",
      targetId: membershipId,
      metadata: { input, previousRole: current.role },
    });
    // The member's open streams re-check their role (closed below a field's @auth).
    publishAfterCommit(tx, tenantId, { type: "access" });
    return row;
  });
  await ctx.tenantDb.afterCommit(() => ctx.directory.invalidateMembership(tenantId, updated.userId));
  return updated;
}

export async function removeMember(ctx: TenantContext, membershipId: string, input: unknown) {
  const tenantId = ctx.tenant.id;
  const removed = await ctx.tenantDb.transaction(async (tx) => {
    const current = await lockedMembership(tx, tenantId, membershipId);
    if (current.role === "OWNER") {
      requireOwnerFor(ctx, "remove an OWNER");
      await keepAnOwner(tx, "membershipId", "The last OWNER cannot be removed");
    }
    await tx.membership.delete({ where: { tenantId_id: { tenantId, id: membershipId } } });
    await writeAudit(tx, ctx, {
      targetType: "Membership",
      targetId: membershipId,
      metadata: { input, userId: current.userId, role: current.role },
    });
    publishAfterCommit(tx, tenantId, { type: "access" });
    return current;
  });
  await ctx.tenantDb.afterCommit(() => ctx.directory.invalidateMembership(tenantId, removed.userId));
  return removed;
}
