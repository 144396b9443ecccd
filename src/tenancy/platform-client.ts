import type { PrismaClient } from "../generated/prisma/client.ts";
import type { PlacementPools } from "../db/placement-pools.ts";

/**
 * The platform client of a request, kept out of the context object: no
 * resolver can reach it. buildContext binds it; the cross-tenant path
 * (`crossTenant()`, src/policy/platform.ts) is the one reader of the
 * client; the placements go to platform operations through
 * `platformPlacements()` (same file, platform admins only). The
 * dependency rule `platform-client-cross-tenant-only` (.dependency-cruiser.cjs)
 * lets no other file import this one. The placements (their pools and
 * owner-side admin, docs/placement.md) are bound the same way.
 */
const clients = new WeakMap<object, { client: PrismaClient; placements?: PlacementPools }>();

export function bindPlatformClient(ctx: object, client: PrismaClient, placements?: PlacementPools): void {
  clients.set(ctx, { client, placements });
}

export function platformClientOf(ctx: object): PrismaClient {
  const bound = clients.get(ctx);
  if (!bound) throw new Error("no platform client bound to this context");
  return bound.client;
}

export function placementsOf(ctx: object): PlacementPools {
  const placements = clients.get(ctx)?.placements;
  if (!placements) throw new Error("no placements bound to this context");
  return placements;
}
