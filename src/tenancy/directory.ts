import type { PrismaClient } from "../generated/prisma/client.ts";
import type { Plan, Role, TenantStatus, QuotaResource } from "../generated/prisma/enums.ts";
import { tenantKey, type Store } from "../infra/store.ts";
import { effectiveLimits } from "./plans.ts";
import { isUuid } from "../uuid.ts";
import { hashApiKey } from "./credentials.ts";

/**
 * Who is who, before a tenant is known: users by subject, tenants by id or
 * slug, memberships, API keys. Reads go to the platform role (the tenant is
 * not yet known, so RLS has nothing to filter by) and are cached in the
 * store; every write that changes an answer calls the matching invalidate*,
 * so a role change or a revocation holds on the very next request, on every
 * replica sharing the store.
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

const keys = {
  user: (subject: string) => `u:sub:${subject}`,
  slug: (slug: string) => `tslug:${slug}`,
  tenant: (id: string) => tenantKey(id, "info"),
  membership: (tenantId: string, userId: string) => tenantKey(tenantId, "m", userId),
  apiKey: (hash: string) => `ak:${hash}`,
};

export class Directory {
  constructor(
    private readonly db: PrismaClient,
    private readonly store: Store,
  ) {}

  /** Cache observer (src/infra/metrics.ts): the key and whether it was a hit. */
  onCacheLookup?: (key: string, hit: boolean) => void;
  private async cached<T>(key: string, load: () => Promise<T | null>): Promise<T | null> {
    const hit = await this.store.get(key);
    this.onCacheLookup?.(key, hit !== null);
    if (hit !== null) return hit === "" ? null : (JSON.parse(hit) as T);
    const value = await load();
    // Misses are cached briefly, so a flood of unknown ids cannot hammer PostgreSQL.
    await this.store.set(key, value === null ? "" : JSON.stringify(value), value === null ? 5 : TTL);
    return value;
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
  async tenant(idOrSlug: string): Promise<TenantInfo | null> {
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
      };
    });
  }

  membership(tenantId: string, userId: string): Promise<MembershipInfo | null> {
    return this.cached(keys.membership(tenantId, userId), () =>
      this.db.membership.findUnique({
        where: { tenantId_userId: { tenantId, userId } },
        select: { id: true, role: true },
      }),
    );
  }

  apiKey(secret: string): Promise<ApiKeyInfo | null> {
    const hash = hashApiKey(secret);
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
    });
  }

  invalidateUser(subject: string) {
    return this.store.del(keys.user(subject));
  }
  invalidateTenant(tenantId: string, slug?: string) {
    return this.store.del(keys.tenant(tenantId), ...(slug ? [keys.slug(slug)] : []));
  }
  invalidateMembership(tenantId: string, userId: string) {
    return this.store.del(keys.membership(tenantId, userId));
  }
  invalidateApiKeyHashes(...hashes: (string | null | undefined)[]) {
    return this.store.del(...hashes.filter((h): h is string => !!h).map(keys.apiKey));
  }
}
