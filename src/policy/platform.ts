import type { PrismaClient } from "../generated/prisma/client.ts";
import type { Prisma } from "../generated/prisma/client.ts";
import type { Context } from "../tenancy/context.ts";
import { actorFields, redact } from "./audit.ts";
import { requirePlatformAdmin } from "./roles.ts";
import { placementsOf, platformClientOf } from "../tenancy/platform-client.ts";
import type { PlacementPools } from "../db/placement-pools.ts";
import { publishAfterCommit, withOutbox } from "../infra/live-events.ts";

/**
 * The one cross-tenant path to the main database. Only platform admins get
 * it, and only through `crossTenant()`, which writes the audit entry first:
 * if the entry cannot be written, the operation does not run. (The
 * placements' pools, for provisioning, moves and analytics of placed
 * tenants, come from `platformPlacements()` below, platform admins only; the
 * operations using them write their audit entry through `crossTenant()`.)
 */
export type PlatformTx = Omit<PrismaClient, "$connect" | "$disconnect" | "$on" | "$transaction" | "$extends" | "$use">;

export interface CrossTenantOperation<T = unknown> {
  action: string;
  /** Tenants the operation names; one named tenant also gets the entry in its own audit log. */
  tenantIds?: string[];
  metadata?: unknown;
  /**
   * For reads that learn which tenants they touch only by running (a page of
   * tenants): the entry is then written after `fn`, still inside the
   * transaction and before anything is returned, with these tenant ids; if it
   * cannot be written the transaction fails and nothing is returned.
   */
  touched?: (result: T) => string[];
}

export async function crossTenant<T>(
  ctx: Context,
  op: CrossTenantOperation<T>,
  fn: (tx: PlatformTx) => Promise<T>,
): Promise<T> {
  requirePlatformAdmin(ctx);
  return withOutbox(ctx.live, (track) =>
    platformClientOf(ctx).$transaction(
      async (tx) => {
        track(tx);
        if (!op.touched) await writeCrossTenantAudit(tx as PlatformTx, ctx, op);
        const result = await fn(tx as PlatformTx);
        if (op.touched) await writeCrossTenantAudit(tx as PlatformTx, ctx, op, op.touched(result));
        return result;
      },
      { maxWait: 5_000, timeout: 60_000 },
    ),
  );
}

/** The placements' pools and owner-side admin, for platform operations (provisioning, moves, analytics). */
export function platformPlacements(ctx: Context): PlacementPools {
  requirePlatformAdmin(ctx);
  return placementsOf(ctx);
}

export async function writeCrossTenantAudit(
  tx: PlatformTx,
  ctx: Context,
  op: Omit<CrossTenantOperation, "touched">,
  touched?: string[],
) {
  const actor = actorFields(ctx);
  const metadata = redact(op.metadata) as Prisma.InputJsonValue | undefined;
  await tx.platformAuditEntry.create({
    data: {
      action: op.action,
      ...actor,
      tenantIds: [...new Set([...(op.tenantIds ?? []), ...(touched ?? [])])],
      metadata,
      requestId: ctx.requestId,
      ip: ctx.ip,
    },
    select: { id: true },
  });
  // Access transparency: a tenant touched by name sees the entry too.
  if (op.tenantIds?.length === 1) {
    const tenantId = op.tenantIds[0]!;
    const entry = await tx.auditLogEntry.create({
      data: {
        tenantId,
        action: op.action,
        ...actor,
        crossTenant: true,
        metadata,
        requestId: ctx.requestId,
        ip: ctx.ip,
      },
      select: { id: true },
    });
    publishAfterCommit(tx, tenantId, { type: "AuditLogEntry", id: entry.id });
    // A platform operation on one tenant (suspension, plan, limits, purge,
    // ...): open streams of the tenant re-check their access.
    publishAfterCommit(tx, tenantId, { type: "access" });
  }
}
