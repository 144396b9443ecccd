import type { Role } from "../generated/prisma/enums.ts";

/** Tenant roles, lowest first: a role holds every right of the roles below it. */
export const ROLE_RANK: Record<Role, number> = { VIEWER: 0, DEVELOPER: 1, ADMIN: 2, OWNER: 3 };

export const hasRole = (held: Role | null | undefined, required: Role) =>
  held != null && ROLE_RANK[held] >= ROLE_RANK[required];
