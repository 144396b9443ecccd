import { AsyncLocalStorage } from "node:async_hooks";

/**
 * The cross-tenant path: the async scope of one admitted @crossTenant
 * field's own resolver (the enforcer runs it inside `onCrossTenantPath`),
 * or of one audited cross-tenant transaction (src/policy/platform.ts). It
 * ends when that resolver settles: a field that returned or failed leaves
 * nothing open, and a sibling or later field of the same request, or a
 * nested field resolved after it returned, is off the path (the Platform
 * type's fields carry @crossTenant themselves). Only code on it gets the
 * platform client (crossTenant()).
 */
const path = new AsyncLocalStorage<object>();

export function onCrossTenantPath<T>(ctx: object, fn: () => T): T {
  return path.run(ctx, fn);
}

/** Whether the running code is on the cross-tenant path of the request of `ctx`. */
export const isOnCrossTenantPath = (ctx: object): boolean => path.getStore() === ctx;

/** Throws unless the running code is on the cross-tenant path of `ctx`'s request (a programming error: masked for the client). */
export function assertCrossTenantPath(ctx: object, what: string): void {
  if (!isOnCrossTenantPath(ctx)) throw new Error(`${what} is reachable only on the cross-tenant path (a @crossTenant field's resolver or /export's platform branch)`);
}
