import type { Membership, PrismaClient } from "../generated/prisma/client.ts";
import type { Store } from "../infra/store.ts";
import { isUuid } from "../uuid.ts";
import { hashApiKey } from "./credentials.ts";
import { assertPlacementOf } from "../db/placement-admin.ts";
import type { Admission } from "../infra/store.ts";
import type { LateCount } from "../infra/rate-limit.ts";
import { DirectoryCache, directoryKeys as keys } from "./directory-cache.ts";
import { readApiKey, readMembership, readTenant } from "./directory-reads.ts";
import { claimIssuer, type IssuerClaim } from "./issuer-claim.ts";
import type {
  ApiKeyInfo,
  DirectoryView,
  IdentityRow,
  MembershipInfo,
  PlacedIdentity,
  TenantIdp,
  TenantInfo,
  UserInfo,
} from "./directory-types.ts";

export type * from "./directory-types.ts";
export { STORE_BACKOFF_MS, STORE_BUDGET_MS } from "./directory-cache.ts";

/**
 * Who is who, before a tenant is known: users by subject, tenants by id or
 * slug, memberships, API keys, read on the platform client and cached in the
 * store (src/tenancy/directory-cache.ts). Its answers are candidates: the
 * request's transaction replaces them with PostgreSQL's before any resolver
 * runs (docs/revocation.md). The client and the store are ECMAScript
 * private: a request gets `view()`, never this object.
 */
export class Directory {
  readonly #db: PrismaClient;
  readonly #cache: DirectoryCache;
  #identity: Promise<string> | undefined;
  #view?: DirectoryView;

  /** `now`: the clock of the store's back-off (the app's clock, ContextDeps.clock); Date.now by default. */
  constructor(db: PrismaClient, store: Store, opts: { now?: () => number } = {}) {
    this.#db = db;
    this.#cache = new DirectoryCache(store, () => this.databaseId(), opts.now ?? Date.now);
  }

  /** Cache observer (src/infra/metrics.ts): the key and whether it was a hit. */
  get onCacheLookup(): ((key: string, hit: boolean) => void) | undefined {
    return this.#cache.onLookup;
  }
  set onCacheLookup(fn: ((key: string, hit: boolean) => void) | undefined) {
    this.#cache.onLookup = fn;
  }

  /** Whether the store was found failing or slow within the last STORE_BACKOFF_MS. */
  get storeAvailable(): boolean {
    return this.#cache.available;
  }

  /**
   * The identity of the main database, as every entry records it (the
   * response cache keys by it too): its cluster's system identifier and its
   * oid (a database made again under the same name is another one). Read
   * once; a failed read is tried again.
   */
  databaseId(): Promise<string> {
    this.#identity ??= (async () => {
      const [row] = await this.#db.$queryRaw<{ id: string }[]>`
        SELECT d.oid::text || ':' || d.datname AS id FROM pg_database d WHERE d.datname = current_database()`;
      // pg_control_system() is open to every role on PostgreSQL; a managed
      // service that withholds it leaves the oid and name alone.
      const cluster = await this.#db.$queryRaw<{ id: string }[]>`SELECT system_identifier::text AS id FROM pg_control_system()`.then(
        (rows) => rows[0]?.id ?? "",
        () => "",
      );
      return `${cluster}:${row!.id}`;
    })().catch((err: unknown) => {
      this.#identity = undefined;
      throw err;
    });
    return this.#identity;
  }

  userBySubject(subject: string): Promise<UserInfo | null> {
    return this.#cache.cached(keys.user(subject), () =>
      this.#db.user.findUnique({
        where: { authSubject: subject },
        select: { id: true, email: true, name: true, authSubject: true, isPlatformAdmin: true },
      }),
    );
  }

  /** A tenant by id or slug. */
  async tenant(idOrSlug: string, opts: { fresh?: boolean } = {}): Promise<TenantInfo | null> {
    const id = await this.tenantIdOf(idOrSlug);
    return id === null ? null : this.#cache.cached(keys.tenant(id), () => readTenant(this.#db, id), opts.fresh);
  }

  /** The id a tenant reference names: itself for an id, the cached slug's tenant for a slug (null: no such slug). */
  async tenantIdOf(idOrSlug: string): Promise<string | null> {
    const ref = idOrSlug.trim().toLowerCase();
    if (isUuid(ref)) return ref;
    return this.#cache.cached(keys.slug(ref), async () => {
      const t = await this.#db.tenant.findUnique({ where: { slug: ref }, select: { id: true } });
      return t?.id ?? null;
    });
  }

  /**
   * The tenant's entry, the user's membership there (`userId` null, an API
   * key: none read) and the request's rate-limit hit, in one store round
   * trip (docs/performance.md, "Fourth round"). The window (`counter`, from
   * RateLimiter.window) is hit only when the cached entries show an ACTIVE
   * tenant and, for a user, a membership: a request they refuse never
   * spends the tenant's budget. `count` is null when nothing was counted
   * (a miss, a refusal, the store unavailable): the caller counts then, as
   * before, once the answers are PostgreSQL's; a LateCount when the store
   * was out of budget with the script still on its way (the caller waits
   * for it rather than counting again).
   */
  async tenantAccess(
    tenantId: string,
    userId: string | null,
    counter: { key: string; windowMs: number } | null,
  ): Promise<{ tenant: TenantInfo | null; membership: MembershipInfo | null; count: number | LateCount | null }> {
    const entries: { key: string; load: () => Promise<unknown>; admit: Admission }[] = [
      { key: keys.tenant(tenantId), load: () => readTenant(this.#db, tenantId), admit: { status: "ACTIVE" } },
    ];
    if (userId) entries.push({ key: keys.membership(tenantId, userId), load: () => readMembership(this.#db, tenantId, userId), admit: { role: true } });
    const { values, count } = await this.#cache.cachedCounting(entries, counter);
    return { tenant: values[0] as TenantInfo | null, membership: (values[1] ?? null) as MembershipInfo | null, count };
  }

  /** The id of the tenant whose custom domain this is (lower-case host name, no port). */
  tenantIdByDomain(domain: string): Promise<string | null> {
    return this.#cache.cached(keys.domain(domain), async () => {
      const t = await this.#db.tenant.findUnique({ where: { domain }, select: { id: true } });
      return t?.id ?? null;
    });
  }

  /** The tenant whose own identity provider has this issuer, with that provider. */
  tenantIdpByIssuer(issuer: string): Promise<{ tenantId: string; idp: TenantIdp } | null> {
    return this.#cache.cached(keys.issuer(issuer), async () => {
      const t = await this.#db.tenant.findUnique({
        where: { idpIssuer: issuer },
        select: { id: true, idpIssuer: true, idpJwksUrl: true, idpAudience: true },
      });
      if (!t?.idpIssuer || !t.idpJwksUrl) return null;
      return { tenantId: t.id, idp: { issuer: t.idpIssuer, jwksUrl: t.idpJwksUrl, audience: t.idpAudience } };
    });
  }

  /** Every registered provider issuer, from PostgreSQL (src/tenancy/tenant-idp.ts keeps them in process). */
  async registeredIssuers(): Promise<string[]> {
    const rows = await this.#db.tenant.findMany({ where: { idpIssuer: { not: null } }, select: { idpIssuer: true } });
    return rows.map((r) => r.idpIssuer!);
  }

  membership(tenantId: string, userId: string): Promise<MembershipInfo | null> {
    return this.#cache.cached(keys.membership(tenantId, userId), () => readMembership(this.#db, tenantId, userId));
  }

  apiKey(secret: string, opts: { fresh?: boolean } = {}): Promise<ApiKeyInfo | null> {
    return this.apiKeyByHash(hashApiKey(secret), opts);
  }

  apiKeyByHash(hash: string, opts: { fresh?: boolean } = {}): Promise<ApiKeyInfo | null> {
    return this.#cache.cached(keys.apiKey(hash), () => readApiKey(this.#db, hash), opts.fresh);
  }

  membershipsOf(userId: string): Promise<Membership[]> {
    return this.#db.membership.findMany({
      where: { userId, tenant: { status: { not: "PENDING_DELETION" } } },
      orderBy: { createdAt: "asc" },
    });
  }

  /** The request's view (one per directory): bound methods, no client. */
  view(): DirectoryView {
    return (this.#view ??= Object.freeze({
      tenant: (ref: string) => this.tenant(ref),
      membershipsOf: (userId: string) => this.membershipsOf(userId),
      platformAdminFlag: (userId: string) => this.platformAdminFlag(userId),
      identityToPlace: (tenant: TenantInfo, email: string) => this.identityToPlace(tenant, email),
      claimIssuer: (tenant: TenantInfo, idp: IssuerClaim | null) => claimIssuer(this.#db, tenant, idp),
      invalidateUser: (subject: string) => this.invalidateUser(subject),
      invalidateTenant: (tenantId: string, slug?: string) => this.invalidateTenant(tenantId, slug),
      invalidateMembership: (tenantId: string, userId: string) => this.invalidateMembership(tenantId, userId),
      invalidateApiKeyHashes: (...hashes: (string | null | undefined)[]) => this.invalidateApiKeyHashes(...hashes),
      invalidateDomain: (...domains: (string | null | undefined)[]) => this.invalidateDomain(...domains),
      invalidateIssuer: (...issuers: (string | null | undefined)[]) => this.invalidateIssuer(...issuers),
    }));
  }

  /** The platform-admin flag of a user, from PostgreSQL (null: no such user). */
  async platformAdminFlag(userId: string): Promise<boolean | null> {
    const u = await this.#db.user.findUnique({ where: { id: userId }, select: { isPlatformAdmin: true } });
    return u ? u.isPlatformAdmin : null;
  }

  /**
   * Before a placed tenant invites `email` (docs/placement.md, "Invitations
   * of known people"): the global identity holding that e-mail, to copy into
   * the placement in the invitation's transaction; "taken": another identity
   * holds it as its subject. Null for a POOLED tenant or an unknown e-mail.
   */
  async identityToPlace(tenant: TenantInfo, email: string): Promise<PlacedIdentity> {
    const ref = tenant.placement;
    if (!ref || ref.placement === "POOLED") return null;
    assertPlacementOf(tenant.id, ref);
    const rows = await this.#db.$queryRaw<(IdentityRow & { by_email: boolean })[]>`
      SELECT id::text, email, name, auth_subject, created_at, email = ${email} AS by_email
      FROM users WHERE email = ${email} OR auth_subject = ${email} ORDER BY (email = ${email}) DESC LIMIT 1`;
    const [row] = rows;
    if (!row) return null;
    if (!row.by_email) return "taken";
    return { id: row.id, email: row.email, name: row.name, auth_subject: row.auth_subject, created_at: row.created_at };
  }

  invalidateUser(subject: string) {
    return this.#cache.evict(keys.user(subject));
  }
  invalidateTenant(tenantId: string, slug?: string) {
    return this.#cache.evict(keys.tenant(tenantId), ...(slug ? [keys.slug(slug)] : []));
  }
  invalidateDomain(...domains: (string | null | undefined)[]) {
    return this.#cache.evict(...domains.filter((d): d is string => !!d).map(keys.domain));
  }
  invalidateIssuer(...issuers: (string | null | undefined)[]) {
    return this.#cache.evict(...issuers.filter((i): i is string => !!i).map(keys.issuer));
  }
  invalidateMembership(tenantId: string, userId: string) {
    return this.#cache.evict(keys.membership(tenantId, userId));
  }
  invalidateApiKeyHashes(...hashes: (string | null | undefined)[]) {
    return this.#cache.evict(...hashes.filter((h): h is string => !!h).map(keys.apiKey));
  }
}
