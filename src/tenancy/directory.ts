import type { Membership, PrismaClient } from "../generated/prisma/client.ts";
import type { Plan, Role, TenantStatus, QuotaResource } from "../generated/prisma/enums.ts";
import { tenantKey, type Store } from "../infra/store.ts";
import { effectiveLimits } from "./plans.ts";
import { effectiveFeatures, type Feature } from "./features.ts";
import { isUuid } from "../uuid.ts";
import { createHash } from "node:crypto";
import { hashApiKey } from "./credentials.ts";
import { assertPlacementOf, placementOf, type PlacementRef } from "../db/placement-admin.ts";

/**
 * Who is who, before a tenant is known: users by subject, tenants by id or
 * slug, memberships, API keys. Reads go to the platform role (the tenant is
 * not yet known, so RLS has nothing to filter by) and are cached in the
 * store.
 *
 * The cache proposes; PostgreSQL decides (docs/revocation.md). What the
 * directory answers is only a candidate: before any resolver runs, the
 * request's own transaction reads the authorization facts from PostgreSQL
 * (`app_request_facts`, src/tenancy/authorize.ts) and they replace the
 * cached ones. So an entry that is stale (an invalidation lost with a Redis
 * restart or failover, a slow reader re-caching what it read before a
 * change) can never grant anything. The invalidate* calls after each write
 * keep the cache close to the truth; they are best effort and never fail
 * the write that committed.
 *
 * Whose entries (docs/revocation.md): every entry names the main database
 * it was read from (its cluster's system identifier and its oid), and an
 * entry of another is a miss. Two deployments whose servers share one Redis
 * (a second bench or server on the same machine, staging beside production
 * on one managed Redis) cache the same keys (`tslug:acme`,
 * `u:sub:<subject>`) with their own ids; taken as candidates, the other's
 * ids made PostgreSQL refuse this deployment's members, and routed a tenant
 * the other had placed in a database of the same server into that database,
 * whose facts confirmed the other's member.
 *
 * The store is optional to correctness, so it is never waited on for long:
 * a read that takes more than STORE_BUDGET_MS, or fails, is answered from
 * PostgreSQL, and the store is then skipped for STORE_BACKOFF_MS, so with
 * Redis down no request waits on it (docs/revocation.md, "Redis down").
 */

export interface UserInfo {
  id: string;
  email: string;
  name: string | null;
  authSubject: string;
  isPlatformAdmin: boolean;
}

export interface TenantInfo {
  id: string;
  slug: string;
  name: string;
  plan: Plan;
  status: TenantStatus;
  region: string;
  createdAt: string;
  limits: Record<QuotaResource, number | null>;
  /** Its plan's features, or its override (docs/tenant-config.md). */
  features: Feature[];
  /** Its custom domain; null: none. */
  domain: string | null;
  /** Its own identity provider; null: none. */
  idp: TenantIdp | null;
  /** Bytes of its rows, as last measured in the background. */
  storageBytes: number;
  /** Where its rows live (docs/placement.md); an entry cached before placements existed reads as POOLED. */
  placement?: PlacementRef;
}

/** A tenant's own identity provider (setTenantIdentityProvider). */
export interface TenantIdp {
  issuer: string;
  jwksUrl: string;
  audience: string | null;
}

export interface MembershipInfo {
  id: string;
  role: Role;
}

export interface ApiKeyInfo {
  id: string;
  tenantId: string;
  name: string;
  role: Role;
  prefix: string;
  expiresAt: string | null;
  revokedAt: string | null;
  /** Set when this secret is the previous one of a rotated key. */
  graceUntil: string | null;
}

const TTL = 300;
/**
 * Entries live TTL minus up to this much (at random): entries cached together
 * (a server's first requests, a bench's warm-up) do not all expire in the same
 * second and send their reads at once to the platform pool (4 connections,
 * shared by every tier).
 */
const TTL_JITTER = 60;
/** How long a cache read or invalidation may wait for the store. */
export const STORE_BUDGET_MS = 500;
/** After a store failure or timeout, the directory goes straight to PostgreSQL this long. */
export const STORE_BACKOFF_MS = 1_000;
const UNAVAILABLE = Symbol("store unavailable");

/** The field of an entry naming the database it was read from, and the field holding a value that is not an object. */
const OWNER = "@db";
const SCALAR = "@v";

/** An entry as stored: the value with the database that answered it. */
function encodeEntry(value: unknown, owner: string): string {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) return JSON.stringify({ ...value, [OWNER]: owner });
  return JSON.stringify({ [OWNER]: owner, [SCALAR]: value ?? null });
}

/** The value of an entry read from `owner`; undefined for an entry of another database (or of an older format): a miss. */
function decodeEntry<T>(text: string, owner: string): { value: T | null } | undefined {
  let entry: unknown;
  try {
    entry = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (entry === null || typeof entry !== "object" || (entry as Record<string, unknown>)[OWNER] !== owner) return undefined;
  if (SCALAR in entry) return { value: (entry as Record<string, unknown>)[SCALAR] as T | null };
  const { [OWNER]: _owner, ...value } = entry as Record<string, unknown>;
  return { value: value as T };
}

const keys = {
  user: (subject: string) => `u:sub:${subject}`,
  slug: (slug: string) => `tslug:${slug}`,
  tenant: (id: string) => tenantKey(id, "info"),
  membership: (tenantId: string, userId: string) => tenantKey(tenantId, "m", userId),
  apiKey: (hash: string) => `ak:${hash}`,
  domain: (domain: string) => `tdomain:${domain}`,
  issuer: (issuer: string) => `tiss:${createHash("sha256").update(issuer, "utf8").digest("hex")}`,
};

/**
 * What a request may do with the directory (`ctx.directory`): named reads and
 * cache invalidations, never the platform client behind them.
 */
/** A global identity as copied into a placement by an invitation (users columns). */
export interface IdentityRow { id: string; email: string; name: string | null; auth_subject: string; created_at: Date }
/** What an invitation by a placed tenant copies: the identity, "taken" (the e-mail is another identity's subject), or nothing. */
export type PlacedIdentity = IdentityRow | "taken" | null;

export interface DirectoryView {
  tenant(idOrSlug: string): Promise<TenantInfo | null>;
  /** The user's own memberships in every tenant not pending deletion, oldest first (viewer.memberships). */
  membershipsOf(userId: string): Promise<Membership[]>;
  platformAdminFlag(userId: string): Promise<boolean | null>;
  /** Before a placed tenant invites `email`: the one identity its app_add_member will use, to copy in the invitation's transaction (see Directory.identityToPlace). */
  identityToPlace(tenant: TenantInfo, email: string): Promise<PlacedIdentity>;
  invalidateUser(subject: string): Promise<void>;
  invalidateTenant(tenantId: string, slug?: string): Promise<void>;
  invalidateMembership(tenantId: string, userId: string): Promise<void>;
  invalidateApiKeyHashes(...hashes: (string | null | undefined)[]): Promise<void>;
  invalidateDomain(...domains: (string | null | undefined)[]): Promise<void>;
  invalidateIssuer(...issuers: (string | null | undefined)[]): Promise<void>;
}

export class Directory {
  constructor(
    private readonly db: PrismaClient,
    private readonly store: Store,
  ) {}

  /** Cache observer (src/infra/metrics.ts): the key and whether it was a hit. */
  onCacheLookup?: (key: string, hit: boolean) => void;
  /** Until when (ms epoch) the store is skipped after a failure. */
  private storeDownUntil = 0;

  /** Whether the store was found failing or slow within the last STORE_BACKOFF_MS. */
  get storeAvailable(): boolean {
    return Date.now() >= this.storeDownUntil;
  }

  /** `op` on the store within STORE_BUDGET_MS, or UNAVAILABLE (and the store is skipped for a while). */
  private async withStore<T>(op: () => Promise<T>): Promise<T | typeof UNAVAILABLE> {
    if (!this.storeAvailable) return UNAVAILABLE;
    let timer: NodeJS.Timeout | undefined;
    let late: NodeJS.Immediate | undefined;
    // The budget is the store's, not this process's: when the event loop lags
    // (a saturated server; timers run before the loop reads its sockets), the
    // timer can fire with the store's answer already waiting in the socket.
    // One more turn (setImmediate runs after the loop has read its sockets)
    // lets that answer win, so a busy process does not take the store for
    // slow and send every lookup of the next STORE_BACKOFF_MS to the platform
    // pool, which all tiers share (docs/placement.md, "Pools").
    const timeout = new Promise<typeof UNAVAILABLE>(
      (resolve) => (timer = setTimeout(() => (late = setImmediate(resolve, UNAVAILABLE)), STORE_BUDGET_MS)),
    );
    try {
      // A late rejection of op() is handled by the race, so it is never unhandled.
      const result = await Promise.race([op(), timeout]);
      if (result === UNAVAILABLE) this.storeDownUntil = Date.now() + STORE_BACKOFF_MS;
      return result;
    } catch {
      this.storeDownUntil = Date.now() + STORE_BACKOFF_MS;
      return UNAVAILABLE;
    } finally {
      clearTimeout(timer);
      clearImmediate(late);
    }
  }

  /** The database whose entries this directory reads (`deployment()`). */
  private owner: Promise<string> | undefined;

  /**
   * The identity of the main database: its cluster's system identifier and
   * its oid (a database made again under the same name is another one; the
   * bench recreates its own). Read once; a failed read is tried again.
   */
  private deployment(): Promise<string> {
    this.owner ??= (async () => {
      const [row] = await this.db.$queryRaw<{ id: string }[]>`
        SELECT d.oid::text || ':' || d.datname AS id FROM pg_database d WHERE d.datname = current_database()`;
      // pg_control_system() is open to every role on PostgreSQL; a managed
      // service that withholds it leaves the oid and name alone.
      const cluster = await this.db.$queryRaw<{ id: string }[]>`SELECT system_identifier::text AS id FROM pg_control_system()`.then(
        (rows) => rows[0]?.id ?? "",
        () => "",
      );
      return `${cluster}:${row!.id}`;
    })().catch((err: unknown) => {
      this.owner = undefined;
      throw err;
    });
    return this.owner;
  }

  /** The main database's identity, as every entry records it (the response cache keys by it too). */
  databaseId(): Promise<string> {
    return this.deployment();
  }

  /** `fresh`: skip the cached answer (it was about to refuse: PostgreSQL confirms first). */
  private async cached<T>(key: string, load: () => Promise<T | null>, fresh = false): Promise<T | null> {
    const owner = await this.deployment();
    const hit = fresh ? null : await this.withStore(() => this.store.get(key));
    // An entry another deployment wrote under the same key is a miss (and is replaced).
    const entry = hit !== UNAVAILABLE && hit !== null ? decodeEntry<T>(hit, owner) : undefined;
    this.onCacheLookup?.(key, !!entry);
    if (entry) return entry.value;
    // Concurrent misses of one key in this process share one read: a key that
    // expires under load is read once, not once per request waiting for it, on
    // the platform pool that every tier shares. A `fresh` read (about to
    // refuse) never joins one that started earlier.
    const pending = fresh ? undefined : (this.loading.get(key) as Promise<T | null> | undefined);
    // Each caller gets its own copy, as from the store.
    if (pending) return pending.then((v) => (v === null ? null : structuredClone(v)));
    const loading = load();
    if (!fresh) {
      this.loading.set(key, loading);
      const forget = () => {
        if (this.loading.get(key) === loading) this.loading.delete(key);
      };
      loading.then(forget, forget);
    }
    const value = await loading;
    // Misses are cached briefly, so a flood of unknown ids cannot hammer
    // PostgreSQL. Not waited for: the answer is already known.
    const ttl = value === null ? 5 : TTL - Math.floor(Math.random() * TTL_JITTER);
    if (hit !== UNAVAILABLE) void this.withStore(() => this.store.set(key, encodeEntry(value, owner), ttl));
    return value;
  }

  /** Reads of missed keys in flight, by key (one per key: `cached`). */
  private readonly loading = new Map<string, Promise<unknown>>();

  /** Best effort: never throws, never waits longer than the budget. */
  private async evict(...keys: string[]): Promise<void> {
    if (keys.length) await this.withStore(() => this.store.del(...keys));
  }

  userBySubject(subject: string): Promise<UserInfo | null> {
    return this.cached(keys.user(subject), () =>
      this.db.user.findUnique({
        where: { authSubject: subject },
        select: { id: true, email: true, name: true, authSubject: true, isPlatformAdmin: true },
      }),
    );
  }

  /** A tenant by id or slug. */
  async tenant(idOrSlug: string, opts: { fresh?: boolean } = {}): Promise<TenantInfo | null> {
    const ref = idOrSlug.trim().toLowerCase();
    let id: string | null = ref;
    if (!isUuid(ref)) {
      id = await this.cached(keys.slug(ref), async () => {
        const t = await this.db.tenant.findUnique({ where: { slug: ref }, select: { id: true } });
        return t?.id ?? null;
      });
    }
    if (!id) return null;
    const tenantId = id;
    return this.cached(keys.tenant(tenantId), async () => {
      const t = await this.db.tenant.findUnique({ where: { id: tenantId }, include: { limitOverrides: true } });
      if (!t) return null;
      return {
        id: t.id,
        slug: t.slug,
        name: t.name,
        plan: t.plan,
        status: t.status,
        region: t.region,
        createdAt: t.createdAt.toISOString(),
        limits: effectiveLimits(t.plan, t.limitOverrides),
        features: effectiveFeatures(t.plan, t.featureOverrides),
        domain: t.domain,
        idp: t.idpIssuer && t.idpJwksUrl ? { issuer: t.idpIssuer, jwksUrl: t.idpJwksUrl, audience: t.idpAudience } : null,
        storageBytes: t.storageBytes,
        placement: placementOf(t),
      };
    }, opts.fresh);
  }

  /** The id of the tenant whose custom domain this is (lower-case host name, no port). */
  tenantIdByDomain(domain: string): Promise<string | null> {
    return this.cached(keys.domain(domain), async () => {
      const t = await this.db.tenant.findUnique({ where: { domain }, select: { id: true } });
      return t?.id ?? null;
    });
  }

  /** The tenant whose own identity provider has this issuer, with that provider. */
  tenantIdpByIssuer(issuer: string): Promise<{ tenantId: string; idp: TenantIdp } | null> {
    return this.cached(keys.issuer(issuer), async () => {
      const t = await this.db.tenant.findUnique({
        where: { idpIssuer: issuer },
        select: { id: true, idpIssuer: true, idpJwksUrl: true, idpAudience: true },
      });
      if (!t?.idpIssuer || !t.idpJwksUrl) return null;
      return { tenantId: t.id, idp: { issuer: t.idpIssuer, jwksUrl: t.idpJwksUrl, audience: t.idpAudience } };
    });
  }

  /** Every registered provider issuer, from PostgreSQL (src/tenancy/tenant-idp.ts keeps them in process). */
  async registeredIssuers(): Promise<string[]> {
    const rows = await this.db.tenant.findMany({ where: { idpIssuer: { not: null } }, select: { idpIssuer: true } });
    return rows.map((r) => r.idpIssuer!);
  }

  membership(tenantId: string, userId: string): Promise<MembershipInfo | null> {
    return this.cached(keys.membership(tenantId, userId), () =>
      this.db.membership.findUnique({
        where: { tenantId_userId: { tenantId, userId } },
        select: { id: true, role: true },
      }),
    );
  }

  apiKey(secret: string, opts: { fresh?: boolean } = {}): Promise<ApiKeyInfo | null> {
    return this.apiKeyByHash(hashApiKey(secret), opts);
  }

  apiKeyByHash(hash: string, opts: { fresh?: boolean } = {}): Promise<ApiKeyInfo | null> {
    return this.cached(keys.apiKey(hash), async () => {
      const k = await this.db.apiKey.findFirst({
        where: { OR: [{ secretHash: hash }, { previousSecretHash: hash }] },
      });
      if (!k) return null;
      const isPrevious = k.secretHash !== hash;
      return {
        id: k.id,
        tenantId: k.tenantId,
        name: k.name,
        role: k.role,
        prefix: k.prefix,
        expiresAt: k.expiresAt?.toISOString() ?? null,
        revokedAt: k.revokedAt?.toISOString() ?? null,
        graceUntil: isPrevious ? (k.previousExpiresAt?.toISOString() ?? new Date(0).toISOString()) : null,
      };
    }, opts.fresh);
  }

  membershipsOf(userId: string): Promise<Membership[]> {
    return this.db.membership.findMany({
      where: { userId, tenant: { status: { not: "PENDING_DELETION" } } },
      orderBy: { createdAt: "asc" },
    });
  }

  private narrow?: DirectoryView;

  /** The request's view (one per directory): bound methods, no client. */
  view(): DirectoryView {
    return (this.narrow ??= Object.freeze({
      tenant: (ref: string) => this.tenant(ref),
      membershipsOf: (userId: string) => this.membershipsOf(userId),
      platformAdminFlag: (userId: string) => this.platformAdminFlag(userId),
      identityToPlace: (tenant: TenantInfo, email: string) => this.identityToPlace(tenant, email),
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
    const u = await this.db.user.findUnique({ where: { id: userId }, select: { isPlatformAdmin: true } });
    return u ? u.isPlatformAdmin : null;
  }

  /**
   * Before a placed tenant invites `email` (docs/placement.md, "Invitations
   * of known people"): the global identity holding that e-mail, which the
   * invitation's transaction copies into the placement (app_place_identity)
   * right before app_add_member, so the person joins under their one id and
   * a refused invitation leaves nothing behind. "taken": nobody has the
   * e-mail but another identity holds it as its subject (app_add_member in
   * the main database refuses it too). Null for a POOLED tenant or an
   * unknown e-mail. Reads only; the route must be the tenant's own.
   */
  async identityToPlace(tenant: TenantInfo, email: string): Promise<PlacedIdentity> {
    const ref = tenant.placement;
    if (!ref || ref.placement === "POOLED") return null;
    assertPlacementOf(tenant.id, ref);
    const rows = await this.db.$queryRaw<(IdentityRow & { by_email: boolean })[]>`
      SELECT id::text, email, name, auth_subject, created_at, email = ${email} AS by_email
      FROM users WHERE email = ${email} OR auth_subject = ${email} ORDER BY (email = ${email}) DESC LIMIT 1`;
    const [row] = rows;
    if (!row) return null;
    if (!row.by_email) return "taken";
    return { id: row.id, email: row.email, name: row.name, auth_subject: row.auth_subject, created_at: row.created_at };
  }

  invalidateUser(subject: string) {
    return this.evict(keys.user(subject));
  }
  invalidateTenant(tenantId: string, slug?: string) {
    return this.evict(keys.tenant(tenantId), ...(slug ? [keys.slug(slug)] : []));
  }
  invalidateDomain(...domains: (string | null | undefined)[]) {
    return this.evict(...domains.filter((d): d is string => !!d).map(keys.domain));
  }
  invalidateIssuer(...issuers: (string | null | undefined)[]) {
    return this.evict(...issuers.filter((i): i is string => !!i).map(keys.issuer));
  }
  invalidateMembership(tenantId: string, userId: string) {
    return this.evict(keys.membership(tenantId, userId));
  }
  invalidateApiKeyHashes(...hashes: (string | null | undefined)[]) {
    return this.evict(...hashes.filter((h): h is string => !!h).map(keys.apiKey));
  }
}
