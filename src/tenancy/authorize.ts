import type { QuotaResource, Role } from "../generated/prisma/enums.ts";
import { featureNotAvailable, rateLimited, tenantAccessDenied, tenantMoving, tenantSuspended, unauthenticated } from "../errors.ts";
import { POOLED } from "../db/placement-admin.ts";
import { routeOf } from "../db/placement-route.ts";
import { effectiveFeatures, sameFeatures } from "./features.ts";
import { retryAfter, type RateLimitState } from "../infra/rate-limit.ts";
import { effectiveLimits, PLAN_STATEMENT_TIMEOUT_MS } from "./plans.ts";
import type { ApiKeyInfo, DirectoryView, TenantIdp, TenantInfo, UserInfo } from "./directory.ts";
import type { RequestFacts } from "./request-facts.ts";
import type { TenantDbHandle } from "./context-types.ts";

/**
 * PostgreSQL decides (docs/revocation.md).
 *
 * `buildContext` resolves the caller from the directory cache (Redis): a
 * candidate, good enough to pick the tenant, refuse early and count the
 * rate limit. Before the first resolver runs, `confirmAuthorization` reads
 * the authorization facts from PostgreSQL and they replace the candidate:
 *
 *  - with a tenant: `app_request_facts` in the message that opens the
 *    request's transaction (query operations: no round-trip of its own;
 *    mutations and /export: one message, BEGIN + settings + facts + COMMIT);
 *  - without a tenant (platform admins, tenant-less users): the user's
 *    platform-admin flag, one primary-key read on the platform path.
 *
 * A membership, key, tenant or user that PostgreSQL no longer grants is
 * refused with the error buildContext would have given; a role, plan,
 * limit or flag that changed is replaced by PostgreSQL's value (in either
 * direction: a promotion also holds at once); every disagreement evicts the
 * stale cache entries (best effort, not waited for).
 */

/** One answer for "no such tenant" and "not yours", so neither reveals which tenants exist. */
export const NO_ACCESS = "Unknown tenant or not a member";
export const KEY_REFUSED = "Invalid, expired or revoked API key";

/** What confirmAuthorization reads and corrects: the request context (src/tenancy/context.ts). */
export interface AuthorizedCaller {
  user: UserInfo | null;
  apiKey: ApiKeyInfo | null;
  tenant: TenantInfo | null;
  role: Role | null;
  membershipId: string | null;
  isPlatformAdmin: boolean;
  /** The tenant's response-cache generation and TTL override, as PostgreSQL read them with the facts (null: not read). */
  cacheFacts?: RequestFacts["cache"] | null;
  readonly tenantDb: TenantDbHandle;
  readonly directory: DirectoryView;
  /** The app's clock, ms epoch (a RATE_LIMITED answer's Retry-After). */
  readonly now: () => number;
}

export interface AuthorizationInput {
  /** The SHA-256 of the API key secret of the request, if any. */
  apiKeyHash: string | null;
  /** The request's rate-limit state (its limit is re-checked when the limit changed). */
  rateLimit: () => RateLimitState | undefined;
  setRateLimit: (state: RateLimitState) => void;
  /** The tenant's own identity provider that verified the bearer token, if one did (docs/tenant-config.md). */
  idp?: TenantIdp | null;
  /** The custom domain (Host) the tenant was resolved from, if it was. */
  domain?: string | null;
}

/** SQLSTATEs of a placement that is gone: no such database, schema, or (search_path without it) function. */
const GONE = new Set(["3D000", "3F000", "42883", "42P01"]);

const sameIdp = (a: TenantIdp | null | undefined, b: TenantIdp | null | undefined) =>
  !!a && !!b && a.issuer === b.issuer && a.jwksUrl === b.jwksUrl && (a.audience ?? null) === (b.audience ?? null);

const sameLimits = (a: TenantInfo["limits"], b: TenantInfo["limits"]) =>
  (Object.keys(b) as QuotaResource[]).every((r) => a[r] === b[r]) && Object.keys(a).length === Object.keys(b).length;

/**
 * `read`: the facts as a message already under way reads them (a planned
 * read sent in one message with them: src/http/use-sql-plans.ts); its
 * failure is mapped as the opening message's. Without it they are read here.
 * The checks are the same either way.
 */
export async function confirmAuthorization(ctx: AuthorizedCaller, input: AuthorizationInput, read?: Promise<RequestFacts>): Promise<void> {
  const { directory } = ctx;
  const user = ctx.user;
  if (!ctx.tenant) {
    if (!user) return;
    const admin = await directory.platformAdminFlag(user.id);
    if (admin === null) {
      void directory.invalidateUser(user.authSubject);
      throw unauthenticated("Unknown subject");
    }
    if (admin !== ctx.isPlatformAdmin) {
      void directory.invalidateUser(user.authSubject);
      ctx.isPlatformAdmin = admin;
      ctx.user = { ...user, isPlatformAdmin: admin };
    }
    return;
  }

  const cached = ctx.tenant;
  const route = cached.placement ?? POOLED;
  const facts: RequestFacts = await (read ?? ctx.tenantDb.authorize()).catch((err: unknown) => {
    // A placement dropped by a move (its schema or database is gone) while
    // this replica's directory entry still routes there: evicted, retryable.
    if (route.placement !== "POOLED" && GONE.has((err as { code?: string }).code ?? "")) {
      void directory.invalidateTenant(cached.id, cached.slug);
      throw tenantMoving();
    }
    throw err;
  });
  // The route is confirmed by PostgreSQL: the tenants row of the database
  // that answered names the placement the tenant is served from. A stale
  // directory entry (its eviction lost) is refused, never served, and evicted.
  if (facts.tenant && facts.route !== undefined && facts.route !== routeOf(route)) {
    void directory.invalidateTenant(cached.id, cached.slug);
    throw tenantMoving();
  }
  if (facts.writable === false) throw tenantMoving();
  if (!facts.tenant) {
    void directory.invalidateTenant(cached.id, cached.slug);
    throw ctx.apiKey ? unauthenticated(KEY_REFUSED) : tenantAccessDenied(NO_ACCESS);
  }

  if (ctx.apiKey) {
    if (facts.key !== ctx.apiKey.role) void directory.invalidateApiKeyHashes(input.apiKeyHash);
    if (!facts.key) throw unauthenticated(KEY_REFUSED);
    ctx.apiKey = { ...ctx.apiKey, role: facts.key };
    ctx.role = facts.key;
  } else if (user) {
    if (!facts.member || facts.member.id !== ctx.membershipId || facts.member.role !== ctx.role) {
      void directory.invalidateMembership(cached.id, user.id);
    }
    if (!facts.member) throw tenantAccessDenied(NO_ACCESS);
    ctx.role = facts.member.role;
    ctx.membershipId = facts.member.id;
    // A token of a tenant's own identity provider never carries platform
    // powers: that provider speaks for its tenant only.
    let admin = facts.admin === true && !input.idp;
    // A placement holds copies of its users' rows; it is never the authority
    // for a global fact. Platform powers through a placed tenant are
    // confirmed by the main database (fail closed: a copy saying false wins).
    if (admin && cached.placement && cached.placement.placement !== "POOLED") {
      admin = (await directory.platformAdminFlag(user.id)) === true;
    }
    if (admin !== ctx.isPlatformAdmin) {
      void directory.invalidateUser(user.authSubject);
      ctx.isPlatformAdmin = admin;
      ctx.user = { ...user, isPlatformAdmin: admin };
    }
  }

  const { status, plan, overrides } = facts.tenant;
  const limits = effectiveLimits(
    plan,
    Object.entries(overrides).map(([resource, limit]) => ({ resource: resource as QuotaResource, limit: limit ?? null })),
  );
  const features = effectiveFeatures(plan, facts.tenant.features);
  const domain = facts.tenant.domain ?? null;
  const idp = facts.tenant.idp ?? null;
  const storageBytes = Number(facts.tenant.storageBytes ?? 0);
  if (
    status !== cached.status ||
    plan !== cached.plan ||
    !sameLimits(limits, cached.limits) ||
    !sameFeatures(features, cached.features ?? []) ||
    domain !== (cached.domain ?? null) ||
    !(idp === null ? !cached.idp : sameIdp(idp, cached.idp))
  ) {
    void directory.invalidateTenant(cached.id);
  }
  ctx.tenant = { ...cached, status, plan, limits, features, domain, idp, storageBytes };
  // The tenant was named by a custom domain or by its own identity
  // provider's token: PostgreSQL confirms both still hold (a removed or
  // moved domain, a replaced provider is refused on the next request).
  if (input.domain && input.domain !== domain) {
    void directory.invalidateDomain(input.domain);
    throw tenantAccessDenied(NO_ACCESS);
  }
  if (input.idp && !sameIdp(input.idp, idp)) {
    void directory.invalidateIssuer(input.idp.issuer);
    throw unauthenticated("Invalid or expired token");
  }
  if (status !== "ACTIVE") throw tenantSuspended(status);
  if (ctx.apiKey && !features.includes("api_access")) throw featureNotAvailable("api_access", plan, 403);
  if (input.idp && !features.includes("sso")) throw featureNotAvailable("sso", plan, 403);
  if (input.domain && !features.includes("custom_domain")) throw featureNotAvailable("custom_domain", plan, 403);
  if (plan !== cached.plan) await ctx.tenantDb.setStatementTimeout(PLAN_STATEMENT_TIMEOUT_MS[plan]);
  recheckRateLimit(input, cached.limits.API_REQUESTS_PER_MINUTE, limits.API_REQUESTS_PER_MINUTE, ctx.now());
  // Only once every check above has passed: the response cache is addressed
  // by it. It stays null until then, and that is what keeps the cache safe
  // while a planned read's authorization is deferred (use-sql-plans.ts
  // `planFirst`, docs/request-path.md "One message for a planned read"):
  // the cache plugin then sees the CANDIDATE caller in its onExecute, and
  // it neither looks up (a lookup means the facts were confirmed first:
  // use-request-transaction.ts `cacheLookup` and the cache's `enabled` read
  // the same option and `no-cache`) nor stores (without cacheFacts it
  // bypasses), so no answer is cached under a caller not yet confirmed.
  ctx.cacheFacts = facts.cache ?? null;
}

/**
 * The rate limit was counted against the cached limit: when PostgreSQL's
 * differs, the request is counted again against the true one. An allowed
 * request's count is exact (limit - remaining); after an unlimited window
 * the count is not known, and the new limit applies from the next request.
 */
function recheckRateLimit(input: AuthorizationInput, before: number | null, limit: number | null, now: number) {
  const state = input.rateLimit();
  if (before === limit || !state || state.limit < 0) return;
  const used = state.limit - state.remaining;
  if (limit === null) {
    input.setRateLimit({ limit: -1, remaining: -1, reset: state.reset });
    return;
  }
  const updated = { limit, remaining: Math.max(0, limit - used), reset: state.reset };
  input.setRateLimit(updated);
  if (used > limit) {
    throw Object.assign(rateLimited(limit, state.reset, retryAfter(state.reset, now)), { rateLimit: updated });
  }
}
