import type { PrismaClient } from "../generated/prisma/client.ts";
import type { PlacementPools } from "../db/placement-pools.ts";
import type { LivePublisher } from "../infra/live-events.ts";
import type { Store } from "../infra/store.ts";
import type { DirectoryView } from "./directory-types.ts";

/**
 * The platform client and the placements' pools of a request, kept off the
 * context object: buildContext binds them; src/policy/platform.ts alone reads
 * them, on the cross-tenant path (crossTenant() (placements handed to its callback), placementsForMove(),
 * crossTenantReader()). The rule `platform-client-cross-tenant-only`
 * (.dependency-cruiser.cjs) lets no other file import this one.
 */
/** What only the cross-tenant path uses besides the client: the store unbound (a purge's or a cache clear's delete by pattern, other tenants' statistics), the directory unbound, the hub's publish to any tenant. */
export interface PlatformServices {
  store?: Pick<Store, "get" | "deletePattern">;
  directory?: DirectoryView;
  live?: LivePublisher;
}

const clients = new WeakMap<object, { client: PrismaClient; placements?: PlacementPools; services: PlatformServices }>();

export function bindPlatformClient(ctx: object, client: PrismaClient, placements?: PlacementPools, services: PlatformServices = {}): void {
  clients.set(ctx, { client, placements, services });
}

export function platformServicesOf(ctx: object): PlatformServices {
  const bound = clients.get(ctx);
  if (!bound) throw new Error("no platform client bound to this context");
  return bound.services;
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
