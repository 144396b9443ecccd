import type { PrismaClient } from "../generated/prisma/client.ts";
import { tenantScope } from "./tenant-scope.ts";
import type { TenantScope } from "./tenant-scope-model.ts";

/** A PrismaClient behind the tenant-scope extension (wall 1), and its transaction form. */
export type ScopedClient = ReturnType<typeof scopedClient>;
export type ScopedTx = Omit<ScopedClient, "$connect" | "$disconnect" | "$on" | "$transaction" | "$extends">;

function scopedClient(base: PrismaClient, scope: TenantScope) {
  return base.$extends(tenantScope(scope));
}

/** The client of a TenantDb: scoped by wall 1, or (tests proving wall 2 alone) the plain one. */
export function clientFor(base: PrismaClient, scope: TenantScope, withScope: boolean): ScopedClient {
  return withScope ? scopedClient(base, scope) : (base as unknown as ScopedClient);
}
