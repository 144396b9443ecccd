import type { PrismaClient } from "../generated/prisma/client.ts";

/**
 * The platform client of a request, kept out of the context object: no
 * resolver can reach it. buildContext binds it; the cross-tenant path
 * (`crossTenant()`, src/policy/platform.ts) is the one reader. The
 * dependency rule `platform-client-cross-tenant-only` (.dependency-cruiser.cjs)
 * lets no other file import this one.
 */
const clients = new WeakMap<object, PrismaClient>();

export function bindPlatformClient(ctx: object, client: PrismaClient): void {
  clients.set(ctx, client);
}

export function platformClientOf(ctx: object): PrismaClient {
  const client = clients.get(ctx);
  if (!client) throw new Error("no platform client bound to this context");
  return client;
}
