import type { Role } from "../generated/prisma/enums.ts";
import { unauthenticated, tenantAccessDenied } from "../errors.ts";
import { isRateLimited } from "../infra/rate-limit.ts";
import { tenantKey, type Store } from "../infra/store.ts";
import { placementPoolsOf } from "../db/clients.ts";
import { confirmAuthorization, KEY_REFUSED, NO_ACCESS } from "./authorize.ts";
import { hashApiKey, type VerifiedToken } from "./credentials.ts";
import type { ApiKeyInfo, DirectoryView, TenantIdp, TenantInfo, UserInfo } from "./directory.ts";
import { bindPlatformClient } from "./platform-client.ts";
import type { TenantIdentityProviders, TenantIdpToken } from "./tenant-idp.ts";
import type { Actor, Context, ContextDeps, LiveHubLike, RequestIdentityProviders, RequestLive, RequestState, RequestStore, TenantKeyOf } from "./context-types.ts";
import { activeTenant, requestTenant } from "./request-tenant.ts";
import { provisionProviderUser, tenantIdps } from "./sso-first-login.ts";
import { bindScope, renewScope } from "./request-scope.ts";

export type * from "./context-types.ts";
export { requestIdFrom } from "./request-tenant.ts";
export { apiKeyHashOf, renewScope } from "./request-scope.ts";

/**
 * buildContext resolves the caller through the directory cache; those
 * answers are candidates until `authorize()` (called before execution, see
 * src/tenancy/authorize.ts) has replaced them with PostgreSQL's.
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
function requestStore(store: Store, ctx: Context): RequestStore {
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
function requestLive(hub: LiveHubLike | undefined, ctx: Context): RequestLive | undefined {
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
function requestDirectory(directory: ContextDeps["directory"], ctx: Context): DirectoryView {
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

const requestIdps = (idps: TenantIdentityProviders | undefined): RequestIdentityProviders | undefined =>
  idps &&
  Object.freeze({
    allowsHttp: idps.allowsHttp,
    globalIssuer: idps.globalIssuer,
    globalJwksUrl: idps.globalJwksUrl,
    forgetIssuers: () => idps.forgetIssuers(),
  });

const keyRefused = (key: ApiKeyInfo | null, now: number) =>
  !key ||
  !!key.revokedAt ||
  (key.expiresAt !== null && Date.parse(key.expiresAt) <= now) ||
  (key.graceUntil !== null && Date.parse(key.graceUntil) <= now);

export async function buildContext(
  deps: ContextDeps,
  request: Request,
  state: RequestState,
  opts: { ip: string | null },
  /** Build onto this object (Yoga's initial context) instead of a new one. */
  target?: object,
): Promise<Context> {
  const { directory } = deps;
  const now = deps.clock ?? Date.now;
  let user: UserInfo | null = null;
  let apiKey: ApiKeyInfo | null = null;
  let tenant: TenantInfo | null = null;
  let role: Role | null = null;
  let membershipId: string | null = null;
  let actor: Actor | null = null;
  let apiKeyHash: string | null = null;
  let credentialsExpireAt: number | null = null;
  let idp: TenantIdp | null = null;
  let domain: string | null = null;

  const authorization = request.headers.get("authorization");
  const keySecret = request.headers.get("x-api-key");
  if (authorization && keySecret) throw unauthenticated("Send either a bearer token or an API key, not both", 400);

  if (authorization) {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!match) throw unauthenticated("Malformed Authorization header");
    // The global keys first: a token they verify is a global token, whatever
    // its issuer. Only a token they refuse may be a tenant provider's.
    let own: TenantIdpToken | null = null;
    let token: VerifiedToken;
    try {
      token = await deps.verifyToken(match[1]!);
    } catch (err) {
      own = await tenantIdps(deps).verify(match[1]!);
      if (!own) throw err;
      token = own.token;
    }
    credentialsExpireAt = token.expiresAt ?? null;
    if (own) {
      // A provider's subject is namespaced by its issuer and acts in that
      // tenant only. Unknown subject and non-member are one answer.
      idp = own.idp;
      ({ tenant, domain } = await requestTenant(deps, request, token.tid, own.tenantId));
      if (!tenant || tenant.id !== own.tenantId) throw tenantAccessDenied(NO_ACCESS);
      tenant = await activeTenant(directory, tenant);
      user = (await directory.userBySubject(own.subject)) ?? (await provisionProviderUser(deps, own, tenant));
      const membership = user && (await directory.membership(tenant.id, user.id));
      if (!user || !membership) throw tenantAccessDenied(NO_ACCESS);
      actor = { type: "USER", id: user.id, label: user.email };
      role = membership.role;
      membershipId = membership.id;
    } else {
      // The user and the tenant are independent lookups: one wait, not two.
      // An unknown subject is reported before anything about the tenant.
      const [userLookup, tenantLookup] = await Promise.allSettled([
        directory.userBySubject(token.sub),
        requestTenant(deps, request, token.tid, undefined),
      ]);
      if (userLookup.status === "rejected") throw userLookup.reason;
      user = userLookup.value;
      if (!user) throw unauthenticated("Unknown subject");
      actor = { type: "USER", id: user.id, label: user.email };
      if (tenantLookup.status === "rejected") throw tenantLookup.reason;
      ({ tenant, domain } = tenantLookup.value);
      if (tenant) {
        const membership = await directory.membership(tenant.id, user.id);
        if (!membership) throw tenantAccessDenied(NO_ACCESS);
        tenant = await activeTenant(directory, tenant);
        role = membership.role;
        membershipId = membership.id;
      }
    }
  } else if (keySecret) {
    apiKeyHash = hashApiKey(keySecret.trim());
    apiKey = await directory.apiKeyByHash(apiKeyHash);
    // A known key the cache would refuse is read again (an unknown hash is
    // not: misses are cached briefly against floods of made-up keys).
    if (apiKey && keyRefused(apiKey, now())) apiKey = await directory.apiKeyByHash(apiKeyHash, { fresh: true });
    if (keyRefused(apiKey, now())) throw unauthenticated(KEY_REFUSED);
    apiKey = apiKey!;
    actor = { type: "API_KEY", id: apiKey.id, label: `key:${apiKey.prefix}` };
    const ends = [apiKey.expiresAt, apiKey.graceUntil].filter((d): d is string => !!d).map((d) => Date.parse(d));
    credentialsExpireAt = ends.length ? Math.min(...ends) : null;
    tenant = await directory.tenant(apiKey.tenantId);
    if (!tenant) throw unauthenticated(KEY_REFUSED);
    const others = await requestTenant(deps, request, undefined, undefined);
    if (others.tenant && others.tenant.id !== tenant.id) throw tenantAccessDenied(NO_ACCESS);
    domain = others.domain;
    tenant = await activeTenant(directory, tenant);
    role = apiKey.role;
    deps.apiKeyUse.note(apiKey, now(), tenant.placement && { pools: placementPoolsOf(deps.app), ref: tenant.placement });
  }

  if (tenant) {
    state.tenantId = tenant.id;
    try {
      state.rateLimit = await deps.rateLimiter.consume(tenant.id, tenant.limits.API_REQUESTS_PER_MINUTE);
    } catch (err) {
      if (isRateLimited(err)) state.rateLimit = err.rateLimit;
      throw err;
    }
  }

  const fields = {
    requestId: state.requestId,
    ip: opts.ip,
    user,
    apiKey,
    actor,
    tenant,
    role,
    membershipId,
    // A tenant's own identity provider speaks for that tenant only.
    isPlatformAdmin: !!user?.isPlatformAdmin && !idp,
    cacheFacts: null,
    credentialsExpireAt,
    binding: { idpIssuer: idp?.issuer ?? null, domain },
    operation: "query" as Context["operation"],
    directory: undefined as unknown as DirectoryView,
    store: undefined as unknown as RequestStore,
    live: undefined as RequestLive | undefined,
    cursors: deps.cursors,
    now,
    tenantConfig: Object.freeze({ baseDomain: deps.baseDomain, identityProviders: requestIdps(deps.tenantIdps) }),
    authorize: () =>
      confirmAuthorization(ctx, {
        apiKeyHash,
        rateLimit: () => state.rateLimit,
        setRateLimit: (s) => (state.rateLimit = s),
        idp,
        domain,
      }),
  };
  const ctx = (target ?? {}) as Context;
  Object.assign(ctx, fields);
  const bound = ctx as { live?: RequestLive; store: RequestStore; directory: DirectoryView };
  bound.live = requestLive(deps.live, ctx);
  bound.store = requestStore(deps.store, ctx);
  bound.directory = requestDirectory(deps.directory, ctx);
  bindScope(ctx, deps, apiKeyHash);
  bindPlatformClient(ctx, deps.platform, placementPoolsOf(deps.app), { store: deps.store, directory: deps.directory.view(), live: deps.live });
  renewScope(ctx);
  return ctx;
}

