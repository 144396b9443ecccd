import type { PrismaClient } from "../generated/prisma/client.ts";
import { placementOf } from "../db/placement-admin.ts";
import { effectiveFeatures } from "./features.ts";
import { effectiveLimits } from "./plans.ts";
import type { ApiKeyInfo, MembershipInfo, TenantInfo } from "./directory-types.ts";

/**
 * The directory's reads of PostgreSQL (the platform client), as its cache
 * (./directory-cache.ts) stores their answers: what src/tenancy/directory.ts
 * loads on a miss.
 */

export async function readTenant(db: PrismaClient, tenantId: string): Promise<TenantInfo | null> {
  const t = await db.tenant.findUnique({ where: { id: tenantId }, include: { limitOverrides: true } });
  if (!t) return null;
  return {
    id: t.id,
    slug: t.slug,
    name: t.name,
    plan: t.plan,
    status: t.status,
    region: t.region,
    createdAt: t.createdAt.toISOString(),
    limits: effectiveLimits(t.plan, t.limitOverrides),
    features: effectiveFeatures(t.plan, t.featureOverrides),
    domain: t.domain,
    idp: t.idpIssuer && t.idpJwksUrl ? { issuer: t.idpIssuer, jwksUrl: t.idpJwksUrl, audience: t.idpAudience } : null,
    storageBytes: t.storageBytes,
    placement: placementOf(t),
  };
}

export function readMembership(db: PrismaClient, tenantId: string, userId: string): Promise<MembershipInfo | null> {
  return db.membership.findUnique({
    where: { tenantId_userId: { tenantId, userId } },
    select: { id: true, role: true },
  });
}

/** The key whose current or previous secret has this hash (graceUntil set for the previous one). */
export async function readApiKey(db: PrismaClient, hash: string): Promise<ApiKeyInfo | null> {
  const k = await db.apiKey.findFirst({
    where: { OR: [{ secretHash: hash }, { previousSecretHash: hash }] },
  });
  if (!k) return null;
  const isPrevious = k.secretHash !== hash;
  return {
    id: k.id,
    tenantId: k.tenantId,
    name: k.name,
    role: k.role,
    prefix: k.prefix,
    expiresAt: k.expiresAt?.toISOString() ?? null,
    revokedAt: k.revokedAt?.toISOString() ?? null,
    graceUntil: isPrevious ? (k.previousExpiresAt?.toISOString() ?? new Date(0).toISOString()) : null,
  };
}
