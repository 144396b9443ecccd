import type { Role } from "../generated/prisma/enums.ts";
import { forbidden, tenantRequired, unauthenticated, type AppError } from "../errors.ts";
import type { Context, TenantContext } from "../tenancy/context.ts";

/** Tenant roles, lowest first: a role holds every right of the roles below it. */
export const ROLE_RANK: Record<Role, number> = { VIEWER: 0, DEVELOPER: 1, ADMIN: 2, OWNER: 3 };

export const hasRole = (held: Role | null | undefined, required: Role) =>
  held != null && ROLE_RANK[held] >= ROLE_RANK[required];

/** The FORBIDDEN error when `held` does not reach `required` (`message` says what needed it); null when it does. */
export function roleShortfall(held: Role | null | undefined, required: Role, message = `This needs the ${required} role`): AppError | null {
  return hasRole(held, required) ? null : forbidden(message, { requires: required });
}

export function requireRole(held: Role | null | undefined, required: Role, message?: string): void {
  const error = roleShortfall(held, required, message);
  if (error) throw error;
}

/**
 * The one tenant and role gate: the caller is authenticated, acts in a
 * tenant, and holds at least `required` there. Used by the `@auth` enforcer
 * and by the one non-GraphQL tenant path (/export); narrows the context.
 */
export function assertTenantRole(ctx: Context, required: Role, message?: string): asserts ctx is TenantContext {
  if (!ctx.actor) throw unauthenticated("Authentication required", null);
  if (!ctx.tenant) {
    if (ctx.isPlatformAdmin) {
      throw forbidden("Platform admins hold no tenant role: tenant data is reached through platform fields", { requires: required });
    }
    throw tenantRequired();
  }
  requireRole(ctx.role, required, message);
}

/** API keys belong to a tenant and are never platform admins: FORBIDDEN, like any non-admin. */
export function requirePlatformAdmin(ctx: Context) {
  if (!ctx.actor) throw unauthenticated("Authentication required", null);
  if (!ctx.user || !ctx.isPlatformAdmin) throw forbidden("Platform admins only", { requires: "PLATFORM_ADMIN" });
}
