import type { PrismaClient } from "../generated/prisma/client.ts";
import type { Prisma } from "../generated/prisma/client.ts";
import { assertPlacementOf, type PlacementRef } from "../db/placement-admin.ts";
import { ROUTE_SQL } from "../db/placement-route.ts";
import { isAuditAction } from "../db/audit-actions.ts";
import type { Context } from "../tenancy/context.ts";
import { actorFields, redact } from "./audit.ts";
import { requirePlatformAdmin } from "./roles.ts";
import { placementsOf, platformClientOf, platformServicesOf } from "../tenancy/platform-client.ts";
import type { TenantInfo } from "../tenancy/directory.ts";
import type { Store } from "../infra/store.ts";
import type { DirectoryView } from "../tenancy/directory.ts";
import type { PlacementPools } from "../db/placement-pools.ts";
import { publishAfterCommit, withOutbox } from "../infra/live-events.ts";
import { assertCrossTenantPath } from "./cross-tenant-path.ts";

/**
 * The one cross-tenant path to the main database. Only platform admins get
 * it, only on the cross-tenant path (inside an admitted @crossTenant
 * field's resolver, src/policy/cross-tenant-path.ts), and only through
 * `crossTenant()`, which writes the audit entry first: if the entry cannot
 * be written, the operation does not run. The placements' pools are handed
 * to its callback, valid while its transaction is open; /export's platform
 * branch reads one tenant's rows through `crossTenantReader()`.
 */
export type PlatformTx = Omit<PrismaClient, "$connect" | "$disconnect" | "$on" | "$transaction" | "$extends" | "$use">;

/** The placements' pools and owner-side admin, handed to a crossTenant() callback; refused once its transaction is over. */
export type PlatformPlacements = () => PlacementPools;

export interface CrossTenantOperation<T = unknown> {
  /** One of AUDIT_ACTIONS (src/db/audit-actions.ts); checked before anything is written. */
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

export type CrossTenantFn<T> = (tx: PlatformTx, placements: PlatformPlacements) => Promise<T>;

export async function crossTenant<T>(ctx: Context, op: CrossTenantOperation<T>, fn: CrossTenantFn<T>): Promise<T> {
  requirePlatformAdmin(ctx);
  assertCrossTenantPath(ctx, "crossTenant()");
  return audited(ctx, op, fn);
}

/** The audited transaction of crossTenant() and crossTenantReader(): the entry, then `fn` with the placements for its duration. */
function audited<T>(ctx: Context, op: CrossTenantOperation<T>, fn: CrossTenantFn<T>): Promise<T> {
  return withOutbox(platformServicesOf(ctx).live, (track) =>
    platformClientOf(ctx).$transaction(
      async (tx) => {
        track(tx);
        let open = true;
        const placements: PlatformPlacements = () => {
          if (!open) throw new Error("platform placements are reachable only on the cross-tenant path, inside the crossTenant() callback they were handed to");
          return placementsOf(ctx);
        };
        try {
          if (!op.touched) await writeCrossTenantAudit(tx as PlatformTx, ctx, op);
          const result = await fn(tx as PlatformTx, placements);
          if (op.touched) await writeCrossTenantAudit(tx as PlatformTx, ctx, op, op.touched(result));
          return result;
        } finally {
          open = false;
        }
      },
      { maxWait: 5_000, timeout: 60_000 },
    ),
  );
}

/**
 * Owner access to the placements for the one platform operation that runs
 * between two audited transactions, outside any (a tenant's move, whose
 * `tenant.move.start` entry is written first): on the cross-tenant path of
 * a platform admin only.
 */
export function placementsForMove(ctx: Context): PlacementPools {
  requirePlatformAdmin(ctx);
  assertCrossTenantPath(ctx, "placementsForMove()");
  return placementsOf(ctx);
}

function service<K extends "store" | "directory">(ctx: Context, name: K, what: string) {
  requirePlatformAdmin(ctx);
  assertCrossTenantPath(ctx, what);
  const bound = platformServicesOf(ctx)[name];
  if (!bound) throw new Error(`${what}: not bound to this context`);
  return bound;
}

/**
 * The directory unbound (any tenant's record and cache entries), for the
 * platform operations: on the cross-tenant path only. Requests have their
 * tenant-bound `ctx.directory`.
 */
export const platformDirectory = (ctx: Context): DirectoryView => service(ctx, "directory", "platformDirectory()");

/**
 * The store unbound: a purge's and a cache clear's delete by pattern, other
 * tenants' cache statistics; on the cross-tenant path only. Requests have
 * their tenant-bound `ctx.store`.
 */
export const platformStore = (ctx: Context): Pick<Store, "get" | "deletePattern"> => service(ctx, "store", "platformStore()");

/** /export's platform branch: the tenant a platform admin names by slug (null: none), before its audited reader. */
export async function exportedTenant(ctx: Context, slug: string): Promise<TenantInfo | null> {
  requirePlatformAdmin(ctx);
  const directory = platformServicesOf(ctx).directory;
  if (!directory) throw new Error("exportedTenant(): no directory bound to this context");
  return directory.tenant(slug);
}

/** A platform admin's reads of one tenant's rows (src/http/export.ts), granted by crossTenantReader. */
export interface TenantRowReader {
  /** One statement on the tenant's rows: the main database's platform client, or its placement's. */
  queryRaw<T>(sql: Prisma.Sql): Promise<T[]>;
  /** The tenant's route as the main database says now (ROUTE_SQL); null when the tenant is gone. */
  route(): Promise<string | null>;
}

/**
 * The cross-tenant path of /export's platform branch: `op` (naming the one
 * tenant) is audited, `prepare` running in its transaction; only once that
 * has committed is a reader of the tenant's rows returned; the reader
 * reaches that tenant's rows only (`ref`, its placement as the directory
 * names it). Nothing is opened before: a refused placement or a failed
 * audit leaves the request off the path.
 */
export async function crossTenantReader(
  ctx: Context,
  op: Omit<CrossTenantOperation<void>, "touched"> & { tenantIds: [string] },
  ref: PlacementRef | undefined,
  prepare: CrossTenantFn<void>,
): Promise<TenantRowReader> {
  requirePlatformAdmin(ctx);
  const tenantId = op.tenantIds[0];
  if (ref) assertPlacementOf(tenantId, ref);
  await audited(ctx, op, prepare);
  const main = platformClientOf(ctx);
  const placed = ref && ref.placement !== "POOLED" ? placementsOf(ctx).platform(ref) : undefined;
  return {
    queryRaw: async <T>(sql: Prisma.Sql) => {
      if (!placed) return main.$queryRaw<T[]>(sql);
      if (ref!.placement !== "SCHEMA") return placed.$queryRaw<T[]>(sql);
      const [, rows] = await placed.$transaction([
        placed.$executeRawUnsafe(`SELECT set_config('search_path', '"${ref!.name}"', true)`),
        placed.$queryRaw<T[]>(sql),
      ]);
      return rows;
    },
    route: async () => {
      const [row] = await main.$queryRawUnsafe<{ route: string }[]>(`SELECT ${ROUTE_SQL} AS route FROM tenants WHERE id = $1::uuid`, tenantId);
      return row?.route ?? null;
    },
  };
}

export async function writeCrossTenantAudit(
  tx: PlatformTx,
  ctx: Context,
  op: Omit<CrossTenantOperation, "touched">,
  touched?: string[],
) {
  if (!isAuditAction(op.action)) throw new Error(`crossTenant: "${op.action}" is not in AUDIT_ACTIONS (src/db/audit-actions.ts)`);
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
