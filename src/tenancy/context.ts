import { createHash, randomUUID } from "node:crypto";
import type { Role } from "../generated/prisma/enums.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";
import {
  tenantAccessDenied,
  tenantRequired,
  tenantSuspended,
  unauthenticated,
} from "../errors.ts";
import { isRateLimited, type RateLimiter, type RateLimitState } from "../infra/rate-limit.ts";
import type { ResponseCacheOptions } from "../infra/response-cache.ts";
import type { Store } from "../infra/store.ts";
import type { CursorCodec } from "../infra/cursor.ts";
import { PLAN_STATEMENT_TIMEOUT_MS } from "./plans.ts";
import type { ApiKeyUse } from "./last-used.ts";
import { confirmAuthorization, KEY_REFUSED, NO_ACCESS } from "./authorize.ts";
import { hashApiKey, type TokenVerifier, type VerifiedToken } from "./credentials.ts";
import type { ApiKeyInfo, Directory, DirectoryView, TenantIdp, TenantInfo, UserInfo } from "./directory.ts";
import { bindPlatformClient } from "./platform-client.ts";
import { placementPoolsOf } from "../db/clients.ts";
import { directoryPlacement, placedDirectorySync, placeNewMember, refuseWhileMoving } from "./placement-directory.ts";
import { NoSeatLeft } from "../db/placement-sync.ts";
import { POOLED } from "../db/placement-admin.ts";
import { TenantIdentityProviders, type TenantIdpToken } from "./tenant-idp.ts";
import { TenantDb, type ScopedTx } from "./tenant-db.ts";
import type { LiveUpdates } from "../infra/live-events.ts";

/**
 * The per-request context: who is calling (user or API key), for which
 * tenant, with which role, and the request's tenant-scoped database handle.
 *
 * buildContext resolves the caller through the directory cache; those
 * answers are candidates until `authorize()` (called before execution, see
 * src/tenancy/authorize.ts) has replaced them with PostgreSQL's.
 */

export interface RequestState {
  requestId: string;
  tenantId?: string;
  rateLimit?: RateLimitState;
  /** The client's address (src/http/use-client-address.ts); null when unknown. */
  ip?: string | null;
}

export interface Actor {
  type: "USER" | "API_KEY";
  id: string;
  label: string;
}

export interface ContextDeps {
  app: PrismaClient;
  platform: PrismaClient;
  store: Store;
  directory: Directory;
  verifyToken: TokenVerifier;
  /** Tenants' own identity providers (src/tenancy/tenant-idp.ts); one over `directory` when omitted. */
  tenantIdps?: TenantIdentityProviders;
  baseDomain?: string;
  /**
   * Test-only: false runs tenant queries without wall 1 (the Prisma tenant
   * scope), to show row-level security holds alone. The server never sets it.
   */
  tenantScope?: boolean;
  /** Live updates: publishes committed changes, serves subscriptions (src/modules/live/hub.ts). */
  live?: LiveUpdates;
  /** The client of the live pool, for the reads of subscription events (src/db/clients.ts); the app client without it. */
  liveDb?: PrismaClient;
  /** The response cache is on: query transactions also read the tenant's cache generation (docs/response-cache.md). */
  responseCache?: ResponseCacheOptions;
  /** Signs and checks pagination cursors (keyed by the server's secret). */
  cursors: CursorCodec;
  /** The time, ms epoch (rate-limit and quota windows, key expiry, last use); tests inject one. Default Date.now. */
  clock?: () => number;
  /** The app's rate limiter and API keys' last uses (createApp makes them: two apps share neither). */
  rateLimiter: RateLimiter;
  apiKeyUse: ApiKeyUse;
}

export interface Context {
  requestId: string;
  ip: string | null;
  user: UserInfo | null;
  apiKey: ApiKeyInfo | null;
  actor: Actor | null;
  tenant: TenantInfo | null;
  role: Role | null;
  membershipId: string | null;
  isPlatformAdmin: boolean;
  /**
   * The tenant's response-cache generation and TTL override, read by
   * PostgreSQL with the authorization facts; null until then, or when the
   * cache is off (src/http/use-response-cache.ts).
   */
  cacheFacts: { generation: string; ttl: number | null } | null;
  /** When the credentials stop being valid by themselves (token exp, key expiry or grace end), ms epoch; null = never. */
  credentialsExpireAt: number | null;
  /**
   * What the credentials and host rest on beyond the membership or key
   * (docs/tenant-config.md): the tenant's own identity provider that
   * verified the token, the custom domain that named the tenant. Open
   * streams re-check them with their access (src/modules/live/access.ts).
   */
  binding: { idpIssuer: string | null; domain: string | null };
  /** Set when execution starts; a mutation runs in one transaction committed once its answer is resolved. */
  operation: "query" | "mutation" | "subscription";
  /** The tenant-scoped handle; throws TENANT_REQUIRED when there is no tenant. */
  readonly db: ScopedTx;
  readonly tenantDb: TenantDb;
  /** Per-request memo (DataLoaders), keyed by name. */
  loaders: Map<string, unknown>;
  /** Named reads and cache invalidations of the directory; never its client. */
  readonly directory: DirectoryView;
  /** The shared store (quota windows, rate limits): no database in it. */
  readonly store: Store;
  /** Live updates: publishes committed changes, serves subscriptions. */
  readonly live?: LiveUpdates;
  /** Signs and checks pagination cursors. */
  readonly cursors: CursorCodec;
  /** The time, ms epoch: the app's clock (ContextDeps.clock). */
  readonly now: () => number;
  /** What tenant configuration checks need: the base domain, the tenants' identity providers (docs/tenant-config.md). */
  readonly tenantConfig: { baseDomain?: string; identityProviders?: TenantIdentityProviders };
  /**
   * Confirms the caller's authorization facts with PostgreSQL and replaces
   * the cached ones (src/tenancy/authorize.ts). Call once `operation` is
   * known, before anything is resolved.
   */
  authorize(): Promise<void>;
  /** Ends the request's transaction, if one was opened; for a mutation, commits it and throws when that failed. */
  finish(): Promise<void>;
}

/**
 * What the enforcer has established before a field behind `@auth` resolves
 * (src/policy/auth-field.ts gives such resolvers this type).
 */
export interface TenantGate {
  readonly actor: Actor;
  readonly tenant: TenantInfo;
  readonly role: Role;
}

/** The context of a field behind `@auth`, and of the services it calls. */
export type TenantContext = Context & TenantGate;

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdFrom(request: Request): string {
  const incoming = request.headers.get("x-request-id");
  return incoming && REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
}

/** The host name of the request (lower case, no port); null when none. */
function hostnameOf(request: Request): string | null {
  const host = request.headers.get("host");
  if (!host) return null;
  const name = host.trim().toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
  return name || null;
}

function subdomainTenant(hostname: string | null, baseDomain?: string): string | undefined {
  if (!hostname || !baseDomain) return undefined;
  if (!hostname.endsWith(`.${baseDomain}`)) return undefined;
  const sub = hostname.slice(0, -baseDomain.length - 1);
  return sub && !sub.includes(".") ? sub : undefined;
}

/** Custom domains are looked up only for hosts outside BASE_DOMAIN that look like domain names. */
const DOMAIN_RE = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
function customDomainCandidate(hostname: string | null, baseDomain?: string): string | null {
  if (!hostname || !DOMAIN_RE.test(hostname)) return null;
  if (baseDomain && (hostname === baseDomain || hostname.endsWith(`.${baseDomain}`))) return null;
  return hostname;
}

interface TenantReferences {
  refs: string[];
  /** The custom domain that named a tenant, if any. */
  domain: string | null;
  domainTenantId: string | null;
}

/**
 * The tenant references of a request, in SPEC order: the `tid` claim, the
 * tenant whose own identity provider issued the token, `X-Tenant-ID`, the
 * tenant whose custom domain the `Host` is, the subdomain of `Host` under
 * BASE_DOMAIN.
 */
async function tenantReferences(
  deps: ContextDeps,
  request: Request,
  tid: string | undefined,
  issuerTenantId: string | undefined,
): Promise<TenantReferences> {
  const hostname = hostnameOf(request);
  const domain = customDomainCandidate(hostname, deps.baseDomain);
  const domainTenantId = domain ? await deps.directory.tenantIdByDomain(domain) : null;
  const refs = [
    tid,
    issuerTenantId,
    request.headers.get("x-tenant-id")?.trim() || undefined,
    domainTenantId ?? undefined,
    subdomainTenant(hostname, deps.baseDomain),
  ].filter((r): r is string => !!r);
  return { refs, domain: domainTenantId ? domain : null, domainTenantId };
}

async function resolveTenant(directory: Directory, refs: string[]): Promise<TenantInfo | null> {
  if (refs.length === 0) return null;
  const tenants = await Promise.all(refs.map((r) => directory.tenant(r)));
  const first = tenants[0];
  if (first && tenants.every((t) => t?.id === first.id)) return first;
  // Sources that do not name one and the same tenant are a conflict, whether
  // or not the others exist (so a conflict reveals nothing either).
  const distinct = new Set(refs.map((r) => r.trim().toLowerCase()));
  if (distinct.size > 1) throw tenantAccessDenied("Conflicting tenant in token, X-Tenant-ID and host");
  throw tenantAccessDenied(NO_ACCESS);
}

/** The tenant a request names, and the custom domain when that named it. */
async function requestTenant(
  deps: ContextDeps,
  request: Request,
  tid: string | undefined,
  issuerTenantId: string | undefined,
): Promise<{ tenant: TenantInfo | null; domain: string | null }> {
  const refs = await tenantReferences(deps, request, tid, issuerTenantId);
  const tenant = await resolveTenant(deps.directory, refs.refs);
  return { tenant, domain: tenant && tenant.id === refs.domainTenantId ? refs.domain : null };
}

/**
 * The first login of a provider subject the platform does not know yet:
 * a user whose auth_subject is `<issuer>#<sub>` (an e-mail of its own under
 * .invalid, the token's `email` claim as its name) becomes a VIEWER of the
 * provider's tenant, within its SEATS, under the lock inviteMember takes.
 * A subject known already is never given a membership here: one removed by
 * an ADMIN stays removed. Null: no seat left, or `sso` withdrawn.
 *
 * The seats are counted where the tenant's memberships are authoritative:
 * a POOLED tenant's in the main database, a placed tenant's in its placement
 * (src/db/placement-sync.ts syncMemberToPlacement, under the SEATS lock
 * there), never in the directory's copy, which may be stale.
 */
async function provisionProviderUser(deps: ContextDeps, own: TenantIdpToken, tenant: TenantInfo): Promise<UserInfo | null> {
  if (!tenant.features.includes("sso")) return null;
  const email = `${createHash("sha256").update(own.subject, "utf8").digest("hex").slice(0, 32)}@sso.invalid`;
  const select = { id: true, email: true, name: true, authSubject: true, isPlatformAdmin: true } as const;
  const seats = tenant.limits.SEATS;
  const user = await deps.platform
    .$transaction(async (tx) => {
      // One first login of the tenant's at a time (two of one subject: the second finds the first's user).
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`${tenant.id}:sso-first-login`}))`;
      const existing = await tx.user.findUnique({ where: { authSubject: own.subject }, select });
      if (existing) return existing;
      // A write of the tenant's: never during a move of it (docs/placement.md, "Moving a tenant"); the
      // directory row's placement then stays what it is until this commits.
      await refuseWhileMoving(tx, tenant.id);
      const placement = (await directoryPlacement(tx, tenant.id)) ?? POOLED;
      if (placement.placement === "POOLED") {
        // The lock and count of SEATS (src/policy/quota.ts, lockCountQuota/countUsage).
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`${tenant.id}:quota:SEATS`}))`;
        if (seats !== null && (await tx.membership.count({ where: { tenantId: tenant.id } })) >= seats) return null;
      }
      const created = await tx.user.create({ data: { email, name: own.email ?? own.token.sub.slice(0, 200), authSubject: own.subject }, select });
      await tx.membership.create({ data: { tenantId: tenant.id, userId: created.id, role: "VIEWER" } });
      // A placed tenant's requests are decided in its placement: the member is written there, its seats counted there, before this commits.
      await placeNewMember(deps.app, tenant.id, created.id, tx, placement, seats);
      return created;
    })
    .catch((err: unknown) => {
      if (err instanceof NoSeatLeft) return null;
      throw err;
    });
  if (user) await Promise.all([deps.directory.invalidateUser(own.subject), deps.directory.invalidateMembership(tenant.id, user.id)]);
  return user;
}

const idpsOf = new WeakMap<Directory, TenantIdentityProviders>();
/** The deps' tenant identity providers (one per directory when the app made none). */
function tenantIdps(deps: ContextDeps): TenantIdentityProviders {
  if (deps.tenantIdps) return deps.tenantIdps;
  let idps = idpsOf.get(deps.directory);
  if (!idps) idpsOf.set(deps.directory, (idps = new TenantIdentityProviders(deps.directory)));
  return idps;
}

/**
 * The tenant, if active. A cached answer that would refuse is read again
 * from PostgreSQL first: the cache never refuses on its own either (a
 * reactivation whose invalidation was lost still holds at once).
 */
async function activeTenant(directory: Directory, tenant: TenantInfo): Promise<TenantInfo> {
  if (tenant.status === "ACTIVE") return tenant;
  const fresh = await directory.tenant(tenant.id, { fresh: true });
  if (!fresh) throw tenantAccessDenied(NO_ACCESS);
  if (fresh.status !== "ACTIVE") throw tenantSuspended(fresh.status);
  return fresh;
}

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
    directory: deps.directory.view(),
    store: deps.store,
    live: deps.live,
    cursors: deps.cursors,
    now,
    tenantConfig: { baseDomain: deps.baseDomain, identityProviders: deps.tenantIdps },
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
  apiKeyHashes.set(ctx, apiKeyHash);
  depsOf.set(ctx, deps);
  bindPlatformClient(ctx, deps.platform, placementPoolsOf(deps.app));
  renewScope(ctx);
  return ctx;
}

/**
 * (Re)creates the request's memo (loaders) and its lazy tenant-scoped
 * handle. A request gets them once; a subscription renews them for every
 * event, so each event is read in a transaction of its own with nothing
 * remembered from the one before.
 *
 * Yoga merges the context with Object.assign, which would call enumerable
 * getters at build time (throwing TENANT_REQUIRED for tenant-less calls and
 * fixing the transaction mode before the operation is known). So the lazy
 * handles are non-enumerable, and are defined on Yoga's own context object
 * when given, which is the object the resolvers receive.
 */
/** The secret hash of a request's API key (its authorization facts are read by it), per context. */
const apiKeyHashes = new WeakMap<Context, string | null>();

/** The SHA-256 of the API-key secret the request was made with (a stream keeps it: its re-checks judge that secret); null without one. */
export const apiKeyHashOf = (ctx: Context): string | null => apiKeyHashes.get(ctx) ?? null;
/** The app's dependencies, per context: kept off the object the resolvers see. */
const depsOf = new WeakMap<Context, ContextDeps>();

export function renewScope(ctx: Context): void {
  const deps = depsOf.get(ctx)!;
  let tenantDb: TenantDb | undefined;
  ctx.loaders = new Map<string, unknown>();
  ctx.finish = async () => {
    await tenantDb?.finish();
  };
  Object.defineProperties(ctx, {
    tenantDb: {
      enumerable: false,
      configurable: true,
      get(this: Context) {
        const tenant = this.tenant;
        if (!tenant) throw tenantRequired();
        // A subscription's reads (nested fields of an event's node) run on the
        // live pool, never on the request tiers (docs/live-updates.md).
        const subscription = this.operation === "subscription";
        tenantDb ??= new TenantDb(subscription ? (deps.liveDb ?? deps.app) : deps.app, {
          tenantId: tenant.id,
          plan: subscription ? undefined : tenant.plan,
          placement: tenant.placement,
          userId: this.user?.id ?? null,
          apiKeyId: this.apiKey?.id ?? null,
          tenantScope: deps.tenantScope,
          statementTimeoutMs: PLAN_STATEMENT_TIMEOUT_MS[tenant.plan],
          mode: this.operation === "mutation" ? "mutation" : "request",
          // A subscription's access is re-read for every event by the hub (for all its streams at once).
          authorization: subscription ? undefined : { apiKeyHash: apiKeyHashes.get(this) ?? null, cache: !!deps.responseCache && this.operation === "query" },
          publisher: deps.live,
          onCommitted: this.operation === "mutation" ? placedDirectorySync(deps.app, deps.directory, tenant) : undefined,
        });
        return tenantDb;
      },
    },
    db: {
      enumerable: false,
      configurable: true,
      get(this: Context) {
        return this.operation === "subscription" ? eventClient(this) : this.tenantDb.client;
      },
    },
  });
}

const eventClients = new WeakMap<Context, ScopedTx>();

/**
 * A subscription's `db`: one handle for the stream's whole life that sends
 * every call to the current event's transaction (Pothos keeps the handle it
 * first saw for as long as the context lives).
 */
function eventClient(ctx: Context): ScopedTx {
  let client = eventClients.get(ctx);
  if (client) return client;
  // `any`: the proxy calls `$` methods and model delegates by name, which no Prisma type describes.
  const current = () => ctx.tenantDb.client as unknown as Record<string, any>;
  const delegates = new Map<string, unknown>();
  client = new Proxy({} as ScopedTx, {
    has: (_, key) => key in current(),
    get: (_, key) => {
      if (typeof key !== "string" || key === "then") return undefined;
      if (key.startsWith("$")) return (...args: unknown[]) => current()[key](...args);
      let delegate = delegates.get(key);
      if (!delegate) {
        delegate = new Proxy({}, { get: (__, op) => (typeof op === "string" ? (...args: unknown[]) => current()[key][op](...args) : undefined) });
        delegates.set(key, delegate);
      }
      return delegate;
    },
  });
  eventClients.set(ctx, client);
  return client;
}
