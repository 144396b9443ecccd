import type { Role } from "../generated/prisma/enums.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";
import type { RateLimiter, RateLimitState } from "../infra/rate-limit.ts";
import type { ResponseCacheOptions } from "../infra/response-cache.ts";
import type { Store } from "../infra/store.ts";
import type { CursorCodec } from "../infra/cursor.ts";
import type { LiveUpdates } from "../infra/live-events.ts";
import type { TokenVerifier } from "./credentials.ts";
import type { ApiKeyUse } from "./last-used.ts";
import type { ApiKeyInfo, Directory, DirectoryView, TenantInfo, UserInfo } from "./directory.ts";
import type { TenantIdentityProviders } from "./tenant-idp.ts";
import type { RequestFacts } from "./request-facts.ts";
import type { ScopedTx } from "./scoped-client.ts";
import type { TenantDb } from "./tenant-db.ts";

/**
 * The per-request context (built by src/tenancy/context.ts): who is calling,
 * for which tenant, with which role, the tenant-scoped database and a few
 * named capabilities. No field leads to the app's, the platform's or an
 * owner's client, nor to the store's or the hub's connections: each
 * capability is a frozen object of closures (test/integration/context-reach.test.ts).
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
  live?: LiveHubLike;
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
  readonly tenantDb: TenantDbHandle;
  /** Per-request memo (DataLoaders), keyed by name. */
  loaders: Map<string, unknown>;
  /** Named reads and cache invalidations of the directory; never its client. */
  readonly directory: DirectoryView;
  /** The shared store's operations a request uses (quota windows, rate limits): not the store. */
  readonly store: RequestStore;
  /** Live updates: publishes committed changes, counts and opens streams. */
  readonly live?: RequestLive;
  /** Signs and checks pagination cursors. */
  readonly cursors: CursorCodec;
  /** The time, ms epoch: the app's clock (ContextDeps.clock). */
  readonly now: () => number;
  /** What tenant configuration checks need: the base domain, the tenants' identity providers (docs/tenant-config.md). */
  readonly tenantConfig: { baseDomain?: string; identityProviders?: RequestIdentityProviders };
  /**
   * Confirms the caller's authorization facts with PostgreSQL and replaces
   * the cached ones (src/tenancy/authorize.ts). Call once `operation` is
   * known, before anything is resolved. `read`: the facts already being
   * read in the message that also carries a planned read (TenantDb
   * `readWithFacts`); without it, they are read now.
   */
  authorize(read?: Promise<RequestFacts>): Promise<void>;
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


/** Builds one of the tenant's keys (`t:{<tenantId>}:…`) from the tenant id the capability hands it. */
export type TenantKeyOf = (tenantId: string) => string;

/**
 * The shared store as a request uses it (quota windows, rate limits, cache
 * statistics): reads and increments of the request tenant's own keys, each
 * built from ctx.tenant by the capability (a key outside that tenant's slot
 * is refused); never the store, never a delete by pattern (the platform
 * path's, src/policy/platform.ts).
 */
export interface RequestStore {
  get(key: TenantKeyOf): Promise<string | null>;
  hit(key: TenantKeyOf, windowMs: number, by?: number): ReturnType<Store["hit"]>;
}

/** A live-updates hub that also serves subscription streams (src/modules/live/hub.ts). */
export interface LiveHubLike extends LiveUpdates {
  open?(ctx: Context, spec: object, transport?: object): Promise<AsyncIterableIterator<unknown>>;
}

/** Live updates as a request uses them: count the request tenant's streams, open this request's stream (publishing is the transactions' outbox's). */
export interface RequestLive {
  /** Open subscription streams of the request's tenant, on every replica. */
  count(): Promise<number>;
  /** Opens a subscription stream of this request; absent when the hub serves none. */
  readonly open?: (spec: object, transport?: object) => Promise<AsyncIterableIterator<unknown>>;
}

/** The request's tenant-scoped database (TenantDb's request-facing methods, bound; never its clients). */
export interface TenantDbHandle
  extends Readonly<Pick<TenantDb, "client" | "tenantId" | "transaction" | "run" | "queryRaw" | "afterCommit" | "afterRollback" | "authorize" | "readWithFacts" | "setStatementTimeout" | "finish">> {
  /** Statements outside the request's transaction, each in a short one of its own (src/http/export.ts). */
  statements(): TenantDbHandle;
}

/** What tenant configuration checks need of the tenants' identity providers (docs/tenant-config.md). */
export type RequestIdentityProviders = Readonly<Pick<TenantIdentityProviders, "allowsHttp" | "globalIssuer" | "globalJwksUrl" | "forgetIssuers">>;
