import { tenantKey, type Store } from "../infra/store.ts";
import type { DirectoryView, TenantInfo } from "./directory.ts";
import type { TenantIdentityProviders } from "./tenant-idp.ts";
import type { Context, ContextDeps, LiveHubLike, RequestIdentityProviders, RequestLive, RequestStore, TenantKeyOf } from "./context-types.ts";

/**
 * The named capabilities a request's context carries (ctx.store, ctx.live,
 * ctx.directory, the identity providers' settings), each bound to the
 * request's tenant and user: no client, store, hub or directory behind them
 * is reachable from a resolver (docs/architecture.md).
 */

/** A capability used with another tenant's id or key than the request's: a programming error (masked for the client). */
const outside = (what: string) => new Error(`${what}: outside the request's tenant`);

/** The request's tenant, read when a capability is used (authorize() replaces the cached one). */
function ownTenantId(ctx: Context, what: string): string {
  const id = ctx.tenant?.id;
  if (!id) throw outside(what);
  return id;
}

/** The store operations a request uses, bound to its tenant: the key is built from ctx.tenant; the store (and its client) stays out of reach. */
export function requestStore(store: Store, ctx: Context): RequestStore {
  const keyOf = (key: TenantKeyOf, what: string) => {
    if (typeof key !== "function") throw new TypeError(`${what}: takes a key builder (tenantId) => key`);
    const tenantId = ownTenantId(ctx, what);
    const built = key(tenantId);
    if (!built.startsWith(tenantKey(tenantId, ""))) throw outside(what);
    return built;
  };
  return Object.freeze({
    get: async (key: TenantKeyOf) => store.get(keyOf(key, "ctx.store.get")),
    hit: async (key: TenantKeyOf, windowMs: number, by?: number) => store.hit(keyOf(key, "ctx.store.hit"), windowMs, by),
  });
}

/** The hub's operations a request uses, bound to its tenant; `open` opens this request's stream. */
export function requestLive(hub: LiveHubLike | undefined, ctx: Context): RequestLive | undefined {
  if (!hub) return undefined;
  const open = hub.open && ((spec: object, transport?: object) => hub.open!(ctx, spec, transport));
  return Object.freeze({
    count: async () => hub.count(ownTenantId(ctx, "ctx.live.count")),
    ...(open ? { open } : {}),
  });
}

/**
 * The directory as a request uses it, bound to its tenant and user: a
 * tenant's record is answered for the request's own tenant or one the
 * caller is a member of (else null, like an unknown one); invalidations of
 * a tenant's entries only for the request's own. The platform path has the
 * unbound view (src/policy/platform.ts).
 */
export function requestDirectory(directory: ContextDeps["directory"], ctx: Context): DirectoryView {
  const view = directory.view();
  const own = (tenantId: string, what: string) => {
    if (tenantId !== ownTenantId(ctx, what)) throw outside(what);
  };
  return Object.freeze({
    tenant: async (ref: string) => {
      const tenant = await view.tenant(ref);
      if (!tenant) return null;
      if (tenant.id === ctx.tenant?.id) return tenant;
      return ctx.user && (await directory.membership(tenant.id, ctx.user.id)) ? tenant : null;
    },
    membershipsOf: async (userId: string) => (userId === ctx.user?.id ? view.membershipsOf(userId) : []),
    platformAdminFlag: async (userId: string) => (userId === ctx.user?.id ? view.platformAdminFlag(userId) : null),
    identityToPlace: async (tenant: TenantInfo, email: string) => {
      own(tenant.id, "ctx.directory.identityToPlace");
      return view.identityToPlace(tenant, email);
    },
    claimIssuer: async (tenant: TenantInfo, idp: Parameters<DirectoryView["claimIssuer"]>[1]) => {
      own(tenant.id, "ctx.directory.claimIssuer");
      return view.claimIssuer(tenant, idp);
    },
    invalidateUser: view.invalidateUser,
    invalidateTenant: async (tenantId: string, slug?: string) => {
      own(tenantId, "ctx.directory.invalidateTenant");
      return view.invalidateTenant(tenantId, slug);
    },
    invalidateMembership: async (tenantId: string, userId: string) => {
      own(tenantId, "ctx.directory.invalidateMembership");
      return view.invalidateMembership(tenantId, userId);
    },
    // Keyed by a hash, a domain or an issuer, not by a tenant: evicting one only makes the next request read PostgreSQL.
    invalidateApiKeyHashes: view.invalidateApiKeyHashes,
    invalidateDomain: view.invalidateDomain,
    invalidateIssuer: view.invalidateIssuer,
  });
}

export const requestIdps = (idps: TenantIdentityProviders | undefined): RequestIdentityProviders | undefined =>
  idps &&
  Object.freeze({
    allowsHttp: idps.allowsHttp,
    globalIssuer: idps.globalIssuer,
    globalJwksUrl: idps.globalJwksUrl,
    forgetIssuers: () => idps.forgetIssuers(),
  });
