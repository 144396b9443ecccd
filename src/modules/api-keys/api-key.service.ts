import { randomBytes } from "node:crypto";
import type { Role } from "../../generated/prisma/enums.ts";
import { badInput, notFound } from "../../errors.ts";
import { writeAudit } from "../../policy/audit.ts";
import type { TenantContext } from "../../tenancy/context.ts";
import { hashApiKey } from "../../tenancy/credentials.ts";
import * as v from "../../graphql/validate.ts";
import { publishAfterCommit } from "../../infra/live-events.ts";

/**
 * Tenant API keys. The secret is `tgk_<prefix>_<43 chars>`: 12 hex chars of
 * visible prefix (shown in lists and audit labels) and 32 random bytes,
 * base64url. Only its SHA-256 is stored; the secret is returned once.
 * Rotation keeps the old secret valid for a grace period. Every replica
 * refuses a revoked secret on its next request: PostgreSQL confirms the key
 * on each request (docs/revocation.md); revocation and rotation also delete
 * the directory's cache entries of the affected hashes.
 */

export const API_KEY_ROLES: readonly Role[] = ["VIEWER", "DEVELOPER", "ADMIN"];
export const DEFAULT_GRACE_MINUTES = 60;
export const MAX_GRACE_MINUTES = 7 * 24 * 60;

export function newSecret(prefix = `tgk_${randomBytes(6).toString("hex")}`) {
  const secret = `${prefix}_${randomBytes(32).toString("base64url")}`;
  return { prefix, secret, secretHash: hashApiKey(secret) };
}

export async function createApiKey(ctx: TenantContext, input: { name: string; role: Role; expiresAt?: Date | null }) {
  const name = v.name("name", input.name);
  if (!API_KEY_ROLES.includes(input.role)) throw badInput("role", "API keys carry VIEWER, DEVELOPER or ADMIN");
  if (input.expiresAt && input.expiresAt.getTime() <= ctx.now()) throw badInput("expiresAt", "expiresAt must be in the future");
  const { prefix, secret, secretHash } = newSecret();
  const apiKey = await ctx.tenantDb.transaction(async (tx) => {
    const row = await tx.apiKey.create({
      data: { tenantId: ctx.tenant.id, name, role: input.role, prefix, secretHash, expiresAt: input.expiresAt ?? null },
    });
    await writeAudit(tx, ctx, { targetType: "ApiKey", targetId: row.id, metadata: { input, prefix } });
    return row;
  });
  return { apiKey, secret };
}

export async function rotateApiKey(ctx: TenantContext, id: string, input: { gracePeriodMinutes?: number | null }) {
  const grace = input.gracePeriodMinutes ?? DEFAULT_GRACE_MINUTES;
  if (!Number.isInteger(grace) || grace < 0 || grace > MAX_GRACE_MINUTES) {
    throw badInput("gracePeriodMinutes", `gracePeriodMinutes must be an integer from 0 to ${MAX_GRACE_MINUTES}`);
  }
  const result = await ctx.tenantDb.transaction(async (tx) => {
    const current = await tx.apiKey.findFirst({ where: { id } });
    if (!current) throw notFound("ApiKey");
    if (current.revokedAt) throw badInput("id", "A revoked key cannot be rotated");
    const { secret, secretHash } = newSecret(current.prefix);
    const row = await tx.apiKey.update({
      where: { tenantId_id: { tenantId: ctx.tenant.id, id } },
      data: {
        secretHash,
        previousSecretHash: current.secretHash,
        previousExpiresAt: new Date(ctx.now() + grace * 60_000),
      },
    });
    await writeAudit(tx, ctx, { targetType: "ApiKey", targetId: id, metadata: { input, gracePeriodMinutes: grace } });
    publishAfterCommit(tx, ctx.tenant.id, { type: "access" });
    return { apiKey: row, secret, stale: [current.secretHash, current.previousSecretHash] };
  });
  await ctx.tenantDb.afterCommit(() => ctx.directory.invalidateApiKeyHashes(...result.stale));
  return { apiKey: result.apiKey, secret: result.secret };
}

export async function revokeApiKey(ctx: TenantContext, id: string, input: unknown) {
  const apiKey = await ctx.tenantDb.transaction(async (tx) => {
    const current = await tx.apiKey.findFirst({ where: { id } });
    if (!current) throw notFound("ApiKey");
    const row = current.revokedAt
      ? current
      : await tx.apiKey.update({ where: { tenantId_id: { tenantId: ctx.tenant.id, id } }, data: { revokedAt: new Date(ctx.now()) } });
    await writeAudit(tx, ctx, { targetType: "ApiKey", targetId: id, metadata: { input } });
    // Streams opened with this key end (UNAUTHENTICATED) on every replica.
    publishAfterCommit(tx, ctx.tenant.id, { type: "access" });
    return row;
  });
  await ctx.tenantDb.afterCommit(() => ctx.directory.invalidateApiKeyHashes(apiKey.secretHash, apiKey.previousSecretHash));
  return apiKey;
}
