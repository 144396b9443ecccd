import { AsyncLocalStorage } from "node:async_hooks";

/**
 * The cross-tenant path of a request: the resolver of a @crossTenant call
 * (the enforcer runs it here) and the platform branch of /export. Only code
 * running on it gets the platform client (crossTenant()) or the placements'
 * pools (platformPlacements()), src/policy/platform.ts. It follows the
 * resolver's own async work, not its sibling fields'.
 */
const path = new AsyncLocalStorage<object>();

export function onCrossTenantPath<T>(ctx: object, fn: () => T): T {
  return path.run(ctx, fn);
}

/** Throws unless the caller runs on the cross-tenant path of `ctx` (a programming error: masked for the client). */
export function assertCrossTenantPath(ctx: object, what: string): void {
  if (path.getStore() !== ctx) throw new Error(`${what} is reachable only on the cross-tenant path (a @crossTenant field or /export's platform branch)`);
}
