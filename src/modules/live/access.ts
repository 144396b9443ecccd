import { Prisma, type PrismaClient } from "../../generated/prisma/client.ts";
import type { Role } from "../../generated/prisma/enums.ts";
import { AppError, featureNotAvailable, forbidden, tenantAccessDenied, tenantSuspended, unauthenticated } from "../../errors.ts";
import type { Plan } from "../../generated/prisma/enums.ts";
import { effectiveFeatures } from "../../tenancy/features.ts";
import { ROLE_RANK, roleShortfall } from "../../policy/roles.ts";

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
  /** The tenant's own identity provider that verified the token, if one did (docs/tenant-config.md). */
  idpIssuer?: string | null;
  /** The custom domain that named the tenant, if one did. */
  domain?: string | null;
}

export interface AccessFacts {
  status: string | null;
  /** The tenant's plan and feature override (API keys need api_access; docs/tenant-config.md). */
  plan?: string | null;
  features?: unknown;
  /** The tenant's identity provider issuer and custom domain now. */
  idpIssuer?: string | null;
  domain?: string | null;
  roles: Record<string, Role>;
  keys: Record<string, { role: Role; revoked: boolean; expiresAt: string | null }>;
}

/** The access facts of many streams of one tenant, in one statement (the re-checks). */
export async function readAccessFacts(platform: PrismaClient, tenantId: string, principals: Principal[]): Promise<AccessFacts> {
  return factsFrom(await platform.$queryRaw<{ status: string; roles: unknown; keys: unknown }[]>(accessFactsSql(tenantId, principals)));
}

/** One statement: the tenant's status, the members' roles and the keys' state. Raw SQL: tenant_id filtered explicitly. */
function accessFactsSql(tenantId: string, principals: Principal[]): Prisma.Sql {
  const userIds = [...new Set(principals.map((p) => p.userId).filter((id): id is string => !!id))];
  const keyIds = [...new Set(principals.map((p) => p.apiKeyId).filter((id): id is string => !!id))];
  return Prisma.sql`SELECT t.status::text AS status, t.plan::text AS plan, t.feature_overrides AS features, t.idp_issuer AS "idpIssuer", t.domain,
      COALESCE((SELECT json_object_agg(m.user_id, m.role) FROM memberships m
                 WHERE m.tenant_id = t.id AND m.user_id = ANY(${userIds}::uuid[])), '{}'::json) AS roles,
      COALESCE((SELECT json_object_agg(k.id, json_build_object('role', k.role, 'revoked', k.revoked_at IS NOT NULL, 'expiresAt', k.expires_at))
                  FROM api_keys k WHERE k.tenant_id = t.id AND k.id = ANY(${keyIds}::uuid[])), '{}'::json) AS keys
    FROM tenants t WHERE t.id = ${tenantId}::uuid`;
}

export function factsFrom(
  rows: { status: string; plan?: string; features?: unknown; idpIssuer?: string | null; domain?: string | null; roles: unknown; keys: unknown }[],
): AccessFacts {
  const row = rows[0];
  if (!row) return { status: null, roles: {}, keys: {} };
  const parse = (v: unknown) => (typeof v === "string" ? JSON.parse(v) : (v ?? {}));
  const features = typeof row.features === "string" ? JSON.parse(row.features) : row.features;
  return {
    status: row.status,
    plan: row.plan ?? null,
    features: features ?? null,
    idpIssuer: row.idpIssuer ?? null,
    domain: row.domain ?? null,
    roles: parse(row.roles),
    keys: parse(row.keys),
  };
}

/** The principal's current role, or the coded error that ends its stream. */
export function verdict(p: Principal, facts: AccessFacts, now = Date.now()): { role: Role } | { error: AppError } {
  if (facts.status === null) return { error: tenantAccessDenied("Unknown tenant or not a member") };
  if (facts.status !== "ACTIVE") return { error: tenantSuspended(facts.status) };
  if (p.notAfter !== null && p.notAfter <= now) return { error: unauthenticated("Credentials expired", null) };
  // A stream opened through the tenant's own identity provider or custom
  // domain ends when that provider or domain is removed or the feature withdrawn.
  const features = facts.plan ? effectiveFeatures(facts.plan as Plan, facts.features) : null;
  if (p.idpIssuer) {
    if (facts.idpIssuer !== undefined && facts.idpIssuer !== p.idpIssuer) return { error: unauthenticated("Invalid or expired token", null) };
    if (features && !features.includes("sso")) return { error: featureNotAvailable("sso", facts.plan!) };
  }
  if (p.domain) {
    if (facts.domain !== undefined && facts.domain !== p.domain) return { error: tenantAccessDenied("Unknown tenant or not a member") };
    if (features && !features.includes("custom_domain")) return { error: featureNotAvailable("custom_domain", facts.plan!) };
  }
  let role: Role;
  if (p.apiKeyId) {
    const key = facts.keys[p.apiKeyId];
    if (!key || key.revoked || (key.expiresAt && Date.parse(key.expiresAt) <= now)) {
      return { error: unauthenticated("Invalid, expired or revoked API key", null) };
    }
    if (facts.plan && !effectiveFeatures(facts.plan as Plan, facts.features).includes("api_access")) {
      return { error: featureNotAvailable("api_access", facts.plan) };
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

