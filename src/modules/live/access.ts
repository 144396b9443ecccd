import { Prisma } from "../../generated/prisma/client.ts";
import type { Role } from "../../generated/prisma/enums.ts";
import { AppError, tenantAccessDenied, tenantSuspended, unauthenticated } from "../../errors.ts";
import { roleShortfall } from "../../policy/roles.ts";

/**
 * Whether an open stream may go on: the facts its authorization rests on,
 * read from PostgreSQL (never from a cache), for many streams of one tenant
 * in one statement. Used for every event (inside the event's own tenant-scoped
 * transaction) and for the re-checks of every open stream that an `access`
 * change, a Redis reconnect or the periodic sweep triggers.
 */
export interface Principal {
  userId: string | null;
  apiKeyId: string | null;
  /** The subscription field's @auth role. */
  requires: Role;
  /** When the credential stops being valid by itself (token exp, key expiry, grace end), ms epoch. */
  notAfter: number | null;
}

export interface AccessFacts {
  status: string | null;
  roles: Record<string, Role>;
  keys: Record<string, { role: Role; revoked: boolean; expiresAt: string | null }>;
}

/** One statement: the tenant's status, the members' roles and the keys' state. Raw SQL: tenant_id filtered explicitly. */
export function accessFactsSql(tenantId: string, principals: Principal[]): Prisma.Sql {
  const userIds = [...new Set(principals.map((p) => p.userId).filter((id): id is string => !!id))];
  const keyIds = [...new Set(principals.map((p) => p.apiKeyId).filter((id): id is string => !!id))];
  return Prisma.sql`SELECT t.status::text AS status,
      COALESCE((SELECT json_object_agg(m.user_id, m.role) FROM memberships m
                 WHERE m.tenant_id = t.id AND m.user_id = ANY(${userIds}::uuid[])), '{}'::json) AS roles,
      COALESCE((SELECT json_object_agg(k.id, json_build_object('role', k.role, 'revoked', k.revoked_at IS NOT NULL, 'expiresAt', k.expires_at))
                  FROM api_keys k WHERE k.tenant_id = t.id AND k.id = ANY(${keyIds}::uuid[])), '{}'::json) AS keys
    FROM tenants t WHERE t.id = ${tenantId}::uuid`;
}

export function factsFrom(rows: { status: string; roles: unknown; keys: unknown }[]): AccessFacts {
  const row = rows[0];
  if (!row) return { status: null, roles: {}, keys: {} };
  const parse = (v: unknown) => (typeof v === "string" ? JSON.parse(v) : (v ?? {}));
  return { status: row.status, roles: parse(row.roles), keys: parse(row.keys) };
}

/** The principal's current role, or the coded error that ends its stream. */
export function verdict(p: Principal, facts: AccessFacts, now = Date.now()): { role: Role } | { error: AppError } {
  if (facts.status === null) return { error: tenantAccessDenied("Unknown tenant or not a member") };
  if (facts.status !== "ACTIVE") return { error: tenantSuspended(facts.status) };
  if (p.notAfter !== null && p.notAfter <= now) return { error: unauthenticated("Credentials expired", null) };
  let role: Role;
  if (p.apiKeyId) {
    const key = facts.keys[p.apiKeyId];
    if (!key || key.revoked || (key.expiresAt && Date.parse(key.expiresAt) <= now)) {
      return { error: unauthenticated("Invalid, expired or revoked API key", null) };
    }
    role = key.role;
  } else if (p.userId) {
    const member = facts.roles[p.userId];
    if (!member) return { error: tenantAccessDenied("You are not a member of this tenant") };
    role = member;
  } else {
    return { error: unauthenticated("Authentication required", null) };
  }
  const error = roleShortfall(role, p.requires);
  return error ? { error } : { role };
}

