import pg from "pg";
import { badInput, notFound, TENANT_MOVING_RETRY_AFTER, tenantMoving } from "../../errors.ts";
import { currentPlacement, moveTenantRows } from "../../db/placement-move.ts";
import { MoveAbandoned, MoveInProgress } from "../../db/placement-move-errors.ts";
import type { Placement } from "../../generated/prisma/enums.ts";
import { placementFor, placementKey, placementOf, POOLED, type PlacementAdmin, type PlacementRef } from "../../db/placement-admin.ts";
import { syncToPlacement } from "../../db/placement-sync.ts";
import { crossTenant, placementsForMove, platformDirectory, type PlatformPlacements } from "../../policy/platform.ts";
import type { Context } from "../../tenancy/context.ts";
import { beginCopy, pgQuery, readRows, recountStats, TENANT_TABLES, writeRows, type Query } from "../../db/placement-rows.ts";
import type { PlatformTx } from "../../policy/platform.ts";

/**
 * Placements on the platform path (docs/placement.md): the placement a
 * provisioning asks for, and the first rows of a new placement.
 */

/** The placement of a new tenant; BAD_USER_INPUT for a target that is not a configured server. */
export function requestedPlacement(
  admin: PlacementAdmin | undefined,
  tenantId: string,
  placement: Placement | null | undefined,
  target: string | null | undefined,
): PlacementRef {
  const kind = placement ?? "POOLED";
  if (target != null && kind !== "DATABASE") throw badInput("placementTarget", "placementTarget names a server for DATABASE placements only");
  if (kind === "POOLED") return POOLED;
  if (!admin) throw badInput("placement", "this server cannot create placements");
  if (kind === "DATABASE" && target != null && !admin.hasServer(target)) {
    throw badInput("placementTarget", "placementTarget must be `default` or a server of PLACEMENT_DATABASE_URLS");
  }
  return placementFor(tenantId, kind, target);
}

/** Creates and migrates the placement; a half-made one (a failed migration) is dropped. */
export async function createPlacement(admin: PlacementAdmin, ref: PlacementRef): Promise<void> {
  await admin.create(ref).catch(async (err) => {
    await admin.drop(ref).catch(() => {});
    throw err;
  });
}

/** The platform transaction as a Query (its rows as Prisma answers them). */
export const txQuery =
  (tx: PlatformTx): Query =>
  <R>(sql: string, params: unknown[]) =>
    tx.$queryRawUnsafe<R[]>(sql, ...params);

/** An owner connection to the database of a placement. */
export async function ownerConnection(admin: PlacementAdmin, ref: PlacementRef): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: admin.databaseUrl(ref) });
  client.on("error", () => {});
  await client.connect();
  return client;
}

/**
 * Copies every row of the tenant that `source` sees (the provisioning's own
 * transaction: the tenant, its owner, membership, limits, first audit entry)
 * into the new placement, in one transaction committed before the source's:
 * if the source then fails, the caller drops the placement.
 */
export async function seedPlacement(admin: PlacementAdmin, ref: PlacementRef, tenantId: string, source: Query): Promise<void> {
  const client = await ownerConnection(admin, ref);
  try {
    await beginCopy(client, tenantId, ref.placement === "SCHEMA" ? ref.name : null);
    const target = pgQuery(client);
    for (const table of TENANT_TABLES) await writeRows(target, table, await readRows(source, table, tenantId));
    await recountStats(target, tenantId);
    await client.query("COMMIT");
  } finally {
    await client.end().catch(() => {});
  }
}

/** A placed tenant's placement as the directory row in `tx` says; null for POOLED (or no such tenant). */
export async function placementIn(tx: PlatformTx, tenantId: string): Promise<PlacementRef | null> {
  const row = await tx.tenant.findUnique({ where: { id: tenantId }, select: { placement: true, placementServer: true, placementName: true } });
  return row && row.placement !== "POOLED" ? placementOf(row) : null;
}

/**
 * After a platform change of a tenant in `tx` (before it commits): a placed
 * tenant's platform-owned rows go to its placement, which decides its
 * requests (src/db/placement-sync.ts). A failure fails the change.
 */
export async function syncPlacedTenant(
  placements: PlatformPlacements,
  tx: PlatformTx,
  tenant: { id: string; placement: Placement; placementServer: string | null; placementName: string | null },
  options: { identityProvider?: boolean } = {},
): Promise<void> {
  if (tenant.placement === "POOLED") return;
  await syncToPlacement(placements().admin, placementOf(tenant), tenant.id, txQuery(tx), options);
}


/**
 * moveTenant (docs/placement.md, "Moving a tenant"): the tenant's rows move
 * live to another placement (src/db/placement-move.ts); then every replica's
 * directory entry is evicted (a replica whose eviction is lost is refused by
 * PostgreSQL's route check and evicts it then), the old placement's pools
 * are closed, and the move is audited. A failure leaves the tenant where it
 * was, unaudited, and answers the error.
 */
export async function moveTenant(ctx: Context, tenantId: string, placement: Placement, target: string | null | undefined, metadata: unknown) {
  const placements = placementsForMove(ctx);
  // Where it is now, as the main database says (not the directory cache).
  const from = await currentPlacement(placements.admin, tenantId);
  const current = from && (await platformDirectory(ctx).tenant(tenantId));
  if (!from || !current) throw notFound("Tenant");
  const to = requestedPlacement(placements.admin, tenantId, placement, target);
  if (placementKey(from) === placementKey(to)) throw badInput("placement", "The tenant is already in that placement");
  // The attempt is audited before anything moves: a move that crashes or fails leaves this entry without its
  // `tenant.move` (the journal, placement_moves, keeps what it left for the next move or the sweep).
  await crossTenant(ctx, { action: "tenant.move.start", tenantIds: [tenantId], metadata: { ...(metadata as object), from: placementKey(from), to: placementKey(to) } }, async (tx, placed) => {
    await syncPlacedTenant(placed, tx, await tx.tenant.findUniqueOrThrow({ where: { id: tenantId } }));
  });
  const move = await moveTenantRows(placements.admin, tenantId, from, to).catch((err: unknown) => {
    // Another move of the tenant is under way (two admins, a retry): retryable.
    if (err instanceof MoveInProgress) throw tenantMoving();
    // Given up because the tenant could have changed under it (its fence lost, a write past it): nothing changed, the move may be repeated.
    if (err instanceof MoveAbandoned) throw tenantMoving(TENANT_MOVING_RETRY_AFTER, "The move was abandoned (the tenant changed while it was copied); the tenant is where it was; repeat the move");
    throw err;
  });
  // Switched: from here on nothing fails the move; the eviction and the audit entry always follow.
  if (from.placement !== "POOLED") await placements.forget(from).catch((err: unknown) => move.leftovers.push(`the old placement's pools were not closed (${String(err)})`));
  await platformDirectory(ctx).invalidateTenant(tenantId, current.slug).catch((err: unknown) => move.leftovers.push(`the directory cache was not evicted (${String(err)}); PostgreSQL's route check refuses and evicts a stale entry`));
  const tenant = await crossTenant(
    ctx,
    { action: "tenant.move", tenantIds: [tenantId], metadata: { ...(metadata as object), from: placementKey(from), to: placementKey(to), rows: move.rows, durationMs: move.durationMs, writesRefusedMs: move.writesRefusedMs, ...(move.leftovers.length ? { leftovers: move.leftovers } : {}) } },
    async (tx, placed) => {
      const t = await tx.tenant.findUniqueOrThrow({ where: { id: tenantId } });
      await syncPlacedTenant(placed, tx, t);
      return t;
    },
  );
  return { tenant, movedRows: move.rows, durationMs: move.durationMs };
}
