import type { PrismaClient } from "../generated/prisma/client.ts";
import type { Prisma } from "../generated/prisma/client.ts";
import { forbidden, unauthenticated } from "../errors.ts";
import type { Context } from "../tenancy/context.ts";
import { actorFields, redact } from "./audit.ts";

/**
 * The one cross-tenant database path. Only platform admins get it, and only
 * through `crossTenant()`, which writes the audit entry first: if the entry
 * cannot be written, the operation does not run.
 */
export type PlatformTx = Omit<PrismaClient, "$connect" | "$disconnect" | "$on" | "$transaction" | "$extends" | "$use">;

export interface CrossTenantOperation {
  action: string;
  /** Tenants the operation touches; one named tenant also gets the entry in its own audit log. */
  tenantIds?: string[];
  metadata?: unknown;
}

export function requirePlatformAdmin(ctx: Context) {
  if (!ctx.user) throw unauthenticated("Authentication required", null);
  if (!ctx.isPlatformAdmin) throw forbidden("Platform admins only", { requires: "PLATFORM_ADMIN" });
}

export async function crossTenant<T>(
  ctx: Context,
  op: CrossTenantOperation,
  fn: (tx: PlatformTx) => Promise<T>,
): Promise<T> {
  requirePlatformAdmin(ctx);
  return ctx.deps.platform.$transaction(
    async (tx) => {
      await writeCrossTenantAudit(tx as PlatformTx, ctx, op);
      return fn(tx as PlatformTx);
    },
    { maxWait: 5_000, timeout: 60_000 },
  );
}

export async function writeCrossTenantAudit(tx: PlatformTx, ctx: Context, op: CrossTenantOperation) {
  const actor = actorFields(ctx);
  const metadata = redact(op.metadata) as Prisma.InputJsonValue | undefined;
  await tx.platformAuditEntry.create({
    data: {
      action: op.action,
      ...actor,
      tenantIds: op.tenantIds ?? [],
      metadata,
      requestId: ctx.requestId,
      ip: ctx.ip,
    },
    select: { id: true },
  });
  // Access transparency: a tenant touched by name sees the entry too.
  if (op.tenantIds?.length === 1) {
    await tx.auditLogEntry.create({
      data: {
        tenantId: op.tenantIds[0]!,
        action: op.action,
        ...actor,
        crossTenant: true,
        metadata,
        requestId: ctx.requestId,
        ip: ctx.ip,
      },
      select: { id: true },
    });
  }
}
