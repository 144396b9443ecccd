import type { PrismaClient } from "../generated/prisma/client.ts";
import type { PlacementPools } from "../db/placement-pools.ts";

/**
 * The platform client and the placements' pools of a request, kept off the
 * context object: buildContext binds them; src/policy/platform.ts alone reads
 * them, on the cross-tenant path (crossTenant() (placements handed to its callback), placementsForMove(),
 * crossTenantReader()). The rule `platform-client-cross-tenant-only`
 * (.dependency-cruiser.cjs) lets no other file import this one.
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
