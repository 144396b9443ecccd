import type { Plan, QuotaResource, Role, TenantStatus } from "../generated/prisma/enums.ts";
import type { Membership } from "../generated/prisma/client.ts";
import type { Feature } from "./features.ts";
import type { PlacementRef } from "../db/placement-admin.ts";

/** What the directory answers (src/tenancy/directory.ts): candidates until PostgreSQL confirms them. */
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

/** A global identity as copied into a placement by an invitation (users columns). */
export interface IdentityRow { id: string; email: string; name: string | null; auth_subject: string; created_at: Date }
/** What an invitation by a placed tenant copies: the identity, "taken" (the e-mail is another identity's subject), or nothing. */
export type PlacedIdentity = IdentityRow | "taken" | null;

/**
 * What a request may do with the directory (`ctx.directory`): named reads and
 * cache invalidations, never the platform client behind them.
 */
export interface DirectoryView {
  tenant(idOrSlug: string): Promise<TenantInfo | null>;
  /** The user's own memberships in every tenant not pending deletion, oldest first (viewer.memberships). */
  membershipsOf(userId: string): Promise<Membership[]>;
  platformAdminFlag(userId: string): Promise<boolean | null>;
  /** Before a placed tenant invites `email`: the one identity its app_add_member will use, to copy in the invitation's transaction (see Directory.identityToPlace). */
  identityToPlace(tenant: TenantInfo, email: string): Promise<PlacedIdentity>;
  /** A placed tenant's identity provider, written first in the main database's registry of issuers (src/tenancy/issuer-claim.ts). */
  claimIssuer(tenant: TenantInfo, idp: { issuer: string; jwksUrl: string; audience: string } | null): Promise<void>;
  invalidateUser(subject: string): Promise<void>;
  invalidateTenant(tenantId: string, slug?: string): Promise<void>;
  invalidateMembership(tenantId: string, userId: string): Promise<void>;
  invalidateApiKeyHashes(...hashes: (string | null | undefined)[]): Promise<void>;
  invalidateDomain(...domains: (string | null | undefined)[]): Promise<void>;
  invalidateIssuer(...issuers: (string | null | undefined)[]): Promise<void>;
}
