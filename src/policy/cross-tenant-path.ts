/**
 * The cross-tenant path of a request: entered when the enforcer admits a
 * @crossTenant call (a platform admin's) or /export's platform branch
 * starts, and held for the rest of that request (the Platform type's fields
 * resolve after the root field that admitted them). Only a request on it
 * gets the platform client (crossTenant()) or the placements' pools
 * (platformPlacements()), src/policy/platform.ts.
 */
const entered = new WeakSet<object>();

export function enterCrossTenantPath(ctx: object): void {
  entered.add(ctx);
}

/** Throws unless the request of `ctx` is on the cross-tenant path (a programming error: masked for the client). */
export function assertCrossTenantPath(ctx: object, what: string): void {
  if (!entered.has(ctx)) throw new Error(`${what} is reachable only on the cross-tenant path (a @crossTenant field or /export's platform branch)`);
}
