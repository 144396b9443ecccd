import type { Role } from "../generated/prisma/enums.ts";
import { unauthenticated, tenantAccessDenied } from "../errors.ts";
import { isRateLimited, type LateCount } from "../infra/rate-limit.ts";
import { placementPoolsOf } from "../db/clients.ts";
import { confirmAuthorization, KEY_REFUSED, NO_ACCESS } from "./authorize.ts";
import { hashApiKey, type VerifiedToken } from "./credentials.ts";
import type { ApiKeyInfo, DirectoryView, TenantIdp, TenantInfo, UserInfo } from "./directory.ts";
import { bindPlatformClient } from "./platform-client.ts";
import type { RequestFacts } from "./request-facts.ts";
import type { TenantIdpToken } from "./tenant-idp.ts";
import type { Actor, Context, ContextDeps, RequestLive, RequestState, RequestStore } from "./context-types.ts";
import { requestDirectory, requestIdps, requestLive, requestStore } from "./request-capabilities.ts";
import { activeTenant, namedTenant, requestTenant, tenantNamed } from "./request-tenant.ts";
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
  /** The request's count in its rate-limit window when the directory's read counted it (Directory.tenantAccess), at `windowAt`. */
  let counted: number | LateCount | null = null;
  let windowAt = 0;
  const window = (tenantId: string) => {
    const w = deps.rateLimiter.window(tenantId);
    windowAt = w.at;
    return w;
  };

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
      // The user and the tenant's id are independent lookups: one round
      // trip, not two. An unknown subject is reported before anything about the tenant.
      const [userLookup, namedLookup] = await Promise.allSettled([
        directory.userBySubject(token.sub),
        namedTenant(deps, request, token.tid, undefined),
      ]);
      if (userLookup.status === "rejected") throw userLookup.reason;
      user = userLookup.value;
      if (!user) throw unauthenticated("Unknown subject");
      actor = { type: "USER", id: user.id, label: user.email };
      if (namedLookup.status === "rejected") throw namedLookup.reason;
      const named = namedLookup.value;
      // The tenant's entry, the membership and the rate-limit hit: one round trip.
      const access = named.id === null ? undefined : await directory.tenantAccess(named.id, user.id, window(named.id));
      ({ tenant, domain } = await tenantNamed(directory, named, access?.tenant));
      if (tenant) {
        const membership = access!.membership;
        if (!membership) throw tenantAccessDenied(NO_ACCESS);
        tenant = await activeTenant(directory, tenant);
        role = membership.role;
        membershipId = membership.id;
        counted = access!.count;
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
    // Other references to a tenant (X-Tenant-ID, Host) must name the key's:
    // counted in the read of its entry only when they do.
    const others = await namedTenant(deps, request, undefined, undefined);
    const agree = others.refs.length === 0 || others.id === apiKey.tenantId;
    const access = await directory.tenantAccess(apiKey.tenantId, null, agree ? window(apiKey.tenantId) : null);
    tenant = access.tenant;
    if (!tenant) throw unauthenticated(KEY_REFUSED);
    const named = await tenantNamed(directory, others, others.id === tenant.id ? tenant : undefined);
    if (named.tenant && named.tenant.id !== tenant.id) throw tenantAccessDenied(NO_ACCESS);
    domain = named.domain;
    tenant = await activeTenant(directory, tenant);
    role = apiKey.role;
    counted = access.count;
    deps.apiKeyUse.note(apiKey, now(), tenant.placement && { pools: placementPoolsOf(deps.app), ref: tenant.placement });
  }

  if (tenant) {
    state.tenantId = tenant.id;
    try {
      const limit = tenant.limits.API_REQUESTS_PER_MINUTE;
      state.rateLimit = await deps.rateLimiter.consume(tenant.id, limit, counted === null ? undefined : { at: windowAt, count: counted });
    } catch (err) {
      if (isRateLimited(err)) state.rateLimit = err.rateLimit;
      throw err;
    }
  }

  // One named store per field: Object.assign of this many properties onto
  // Yoga's context object turns it into a dictionary (a hash lookup for
  // every ctx read of every resolver, and 1.6 KB instead of ~0.4 KB per
  // context, which an open stream keeps: docs/live-updates.md, "Ninth round,
  // second part").
  const ctx = (target ?? {}) as Context;
  const init = ctx as { -readonly [K in keyof Context]: Context[K] };
  init.requestId = state.requestId;
  init.ip = opts.ip;
  init.user = user;
  init.apiKey = apiKey;
  init.actor = actor;
  init.tenant = tenant;
  init.role = role;
  init.membershipId = membershipId;
  // A tenant's own identity provider speaks for that tenant only.
  init.isPlatformAdmin = !!user?.isPlatformAdmin && !idp;
  init.cacheFacts = null;
  init.credentialsExpireAt = credentialsExpireAt;
  init.binding = { idpIssuer: idp?.issuer ?? null, domain };
  init.operation = "query";
  init.cursors = deps.cursors;
  init.now = now;
  init.tenantConfig = Object.freeze({ baseDomain: deps.baseDomain, identityProviders: requestIdps(deps.tenantIdps) });
  init.authorize = (read?: Promise<RequestFacts>) =>
    confirmAuthorization(
      ctx,
      {
        apiKeyHash,
        rateLimit: () => state.rateLimit,
        setRateLimit: (s) => (state.rateLimit = s),
        idp,
        domain,
      },
      read,
    );
  const bound = ctx as { live?: RequestLive; store: RequestStore; directory: DirectoryView };
  bound.live = requestLive(deps.live, ctx);
  bound.store = requestStore(deps.store, ctx);
  bound.directory = requestDirectory(deps.directory, ctx);
  bindScope(ctx, deps, apiKeyHash);
  bindPlatformClient(ctx, deps.platform, placementPoolsOf(deps.app), { store: deps.store, directory: deps.directory.view(), live: deps.live });
  renewScope(ctx);
  return ctx;
}

