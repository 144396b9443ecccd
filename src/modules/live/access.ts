import { Prisma, type PrismaClient } from "../../generated/prisma/client.ts";
import type { Role } from "../../generated/prisma/enums.ts";
import { AppError, featureNotAvailable, tenantAccessDenied, tenantSuspended, unauthenticated } from "../../errors.ts";
import type { Plan } from "../../generated/prisma/enums.ts";
import { effectiveFeatures } from "../../tenancy/features.ts";
import { roleShortfall } from "../../policy/roles.ts";
import { isUuid } from "../../uuid.ts";

/**
 * Whether an open stream may go on: the facts its authorization rests on,
 * read from PostgreSQL (never from a cache), for many streams of one tenant
 * in one statement. Used for every event (inside the event's own tenant-scoped
 * transaction) and for the re-checks of every open stream that an `access`
 * change, a Redis reconnect, the periodic sweep or a credential's own end
 * triggers.
 *
 * An API key's validity has one definition, PostgreSQL's
 * `app_api_key_grant` (migration 20261202008000_api_key_grant), which
 * app_request_facts asks for every request: a stream asks it with the
 * secret hash it was opened with, so a secret rotated away (or past its
 * grace) ends its streams like its requests.
 */
export interface Principal {
  userId: string | null;
  apiKeyId: string | null;
  /** The SHA-256 (hex) of the API-key secret that opened the stream: PostgreSQL judges that secret, not just the key. */
  apiKeyHash: string | null;
  /** The subscription field's @auth role. */
  requires: Role;
  /** When the bearer token stops being valid (its verified exp), ms epoch; null: no token, or no exp. */
  tokenExpiresAt: number | null;
  /** The tenant's own identity provider that verified the token, if one did (docs/tenant-config.md). */
  idpIssuer?: string | null;
  /** The custom domain that named the tenant, if one did. */
  domain?: string | null;
}

/** What app_api_key_grant answers for a key and a secret: its role and when it stops holding by itself (ISO; null: never). */
export interface KeyGrant {
  role: Role;
  until: string | null;
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
  /** By `keyOf(principal)`: the grant of that key for that secret; null or absent: refused. */
  keys: Record<string, KeyGrant | null>;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** A stream's key and secret, as the facts name them. */
export const keyOf = (p: Pick<Principal, "apiKeyId" | "apiKeyHash">) => `${p.apiKeyId}:${p.apiKeyHash}`;

/** The access facts of many streams of one tenant, in one statement (the re-checks on the platform path). */
export async function readAccessFacts(platform: PrismaClient, tenantId: string, principals: Principal[], at: number): Promise<AccessFacts> {
  return factsFrom(await platform.$queryRaw<{ status: string; roles: unknown; keys: unknown }[]>(Prisma.raw(accessFactsSql(tenantId, principals, at))));
}

/**
 * One statement: the tenant's status, plan, features, identity provider and
 * domain, the members' roles, and each (key, secret) pair's grant from
 * app_api_key_grant, judged at the later of PostgreSQL's time and `at` (the
 * hub's clock, ms epoch). Raw SQL: tenant_id filtered explicitly; every
 * inlined value is checked (UUIDs, SHA-256 hex digests, a finite time).
 * `columns` adds columns of `tenants t` (the event read's route).
 */
export function accessFactsSql(tenantId: string, principals: Principal[], at: number, columns = ""): string {
  const userIds = [...new Set(principals.map((p) => p.userId).filter((id): id is string => !!id))];
  const keys = new Map(principals.filter((p) => p.apiKeyId).map((p) => [keyOf(p), p]));
  const keyIds = [...keys.values()].map((p) => p.apiKeyId!);
  const hashes = [...keys.values()].map((p) => p.apiKeyHash ?? "");
  if (![tenantId, ...userIds, ...keyIds].every(isUuid) || !hashes.every((h) => SHA256_HEX.test(h)) || !Number.isFinite(at)) {
    throw new Error("invalid live access parameters");
  }
  const array = (values: string[], type: string) => `'{${values.join(",")}}'::${type}[]`;
  const when = `greatest(statement_timestamp(), '${new Date(at).toISOString()}'::timestamptz)`;
  return `SELECT t.status::text AS status, t.plan::text AS plan, t.feature_overrides AS features, t.idp_issuer AS "idpIssuer", t.domain,
      COALESCE((SELECT json_object_agg(m.user_id, m.role) FROM memberships m WHERE m.tenant_id = t.id AND m.user_id = ANY(${array(userIds, "uuid")})), '{}'::json) AS roles,
      COALESCE((SELECT json_object_agg(p.id::text || ':' || p.hash, app_api_key_grant(t.id, p.id, p.hash, ${when}))
                  FROM unnest(${array(keyIds, "uuid")}, ${array(hashes, "text")}) AS p(id, hash)), '{}'::json) AS keys${columns}
      FROM tenants t WHERE t.id = '${tenantId}'::uuid`;
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

/**
 * The principal's current role and when it must be checked again by itself
 * (its token's or its key's own end, ms epoch; null: no such time), or the
 * coded error that ends its stream.
 */
export function verdict(p: Principal, facts: AccessFacts, now: number): { role: Role; until: number | null } | { error: AppError } {
  if (facts.status === null) return { error: tenantAccessDenied("Unknown tenant or not a member") };
  if (facts.status !== "ACTIVE") return { error: tenantSuspended(facts.status) };
  if (p.tokenExpiresAt !== null && p.tokenExpiresAt <= now) return { error: unauthenticated("Credentials expired", null) };
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
  let until = p.tokenExpiresAt;
  if (p.apiKeyId) {
    // PostgreSQL's answer for this key and this secret (app_api_key_grant): nothing is judged here.
    const grant = facts.keys[keyOf(p)];
    if (!grant) return { error: unauthenticated("Invalid, expired or revoked API key", null) };
    if (facts.plan && !effectiveFeatures(facts.plan as Plan, facts.features).includes("api_access")) {
      return { error: featureNotAvailable("api_access", facts.plan) };
    }
    role = grant.role;
    if (grant.until !== null) until = Date.parse(grant.until);
  } else if (p.userId) {
    const member = facts.roles[p.userId];
    if (!member) return { error: tenantAccessDenied("You are not a member of this tenant") };
    role = member;
  } else {
    return { error: unauthenticated("Authentication required", null) };
  }
  const error = roleShortfall(role, p.requires);
  return error ? { error } : { role, until };
}
