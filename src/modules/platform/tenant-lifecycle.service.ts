import { badInput, notFound } from "../../errors.ts";
import { QuotaResource, type Placement, type Plan, type TenantStatus } from "../../generated/prisma/enums.ts";
import type { Tenant } from "../../generated/prisma/client.ts";
import { randomUUID } from "node:crypto";
import { crossTenant, platformDirectory, type PlatformTx } from "../../policy/platform.ts";
import { createPlacement, requestedPlacement, seedPlacement, syncPlacedTenant, txQuery } from "./placement.service.ts";
import { refuseWhileMoving } from "../../tenancy/placement-directory.ts";
import type { Context } from "../../tenancy/context.ts";
import * as v from "../../graphql/validate.ts";
import { conflictToInput } from "../projects/project.service.ts";
import type { AuditAction } from "../../db/audit-actions.ts";

/**
 * The tenant lifecycle, for platform admins. Every change runs on the
 * platform path inside crossTenant() (audit entry first, in the same
 * transaction; the tenant's own admins see it too). Every replica sees the
 * new status, plan or limits on its next request, because PostgreSQL
 * confirms them on each request (docs/revocation.md); the change also
 * invalidates the tenant's directory entry in the shared store.
 */

/** The longest cache TTL an override may set (30 days, as CACHE_TTL_<PLAN>). */
const MAX_CACHE_TTL_SECONDS = 30 * 86_400;
const REGION_RE = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
const QUOTA_RESOURCES: QuotaResource[] = Object.values(QuotaResource);

export interface LimitInput {
  resource: QuotaResource;
  /** null = unlimited. */
  limit?: number | null;
}

function checkLimits(field: string, limits: LimitInput[]): LimitInput[] {
  if (limits.length > QUOTA_RESOURCES.length) throw badInput(field, `${field}: at most one entry per resource`);
  const seen = new Set<string>();
  for (const [i, l] of limits.entries()) {
    if (!QUOTA_RESOURCES.includes(l.resource)) throw badInput(`${field}[${i}].resource`, "Unknown resource");
    if (seen.has(l.resource)) throw badInput(`${field}[${i}].resource`, `${l.resource} is given twice`);
    seen.add(l.resource);
    if (l.limit != null && (!Number.isInteger(l.limit) || l.limit < 0)) {
      throw badInput(`${field}[${i}].limit`, "limit must be a non-negative integer, or null for unlimited");
    }
  }
  return limits;
}

async function upsertLimits(tx: PlatformTx, tenantId: string, limits: LimitInput[]) {
  for (const l of limits) {
    const limit = l.limit ?? null;
    await tx.tenantLimitOverride.upsert({
      where: { tenantId_resource: { tenantId, resource: l.resource } },
      create: { tenantId, resource: l.resource, limit },
      update: { limit },
    });
  }
}

export interface ProvisionInput {
  name: string;
  slug: string;
  plan: Plan;
  region?: string | null;
  limits?: LimitInput[] | null;
  owner: { email: string; name?: string | null; authSubject?: string | null };
  /** Where its rows live (default POOLED); placementTarget: the server of a DATABASE placement. */
  placement?: Placement | null;
  placementTarget?: string | null;
}

/**
 * Tenant (region defaults to the database default, eu-west-1), owner
 * (created or reused by e-mail), OWNER membership and any initial limit
 * overrides (defaults: the plan's limits): all or nothing. A SCHEMA or
 * DATABASE tenant's placement is created and migrated in the transaction,
 * after its audit entry and before its rows, which are copied there; the
 * placement is dropped again if anything fails (docs/placement.md).
 */
export async function provisionTenant(ctx: Context, input: ProvisionInput, metadata?: unknown) {
  const name = v.name("name", input.name);
  const slug = v.slug("slug", input.slug);
  const region = input.region == null ? undefined : input.region.trim().toLowerCase();
  if (region !== undefined && !REGION_RE.test(region)) throw badInput("region", "region must look like eu-west-1");
  const limits = checkLimits("limits", input.limits ?? []);
  const email = input.owner.email.trim().toLowerCase();
  const ownerName = input.owner.name == null ? null : v.name("owner.name", input.owner.name);
  const subject = input.owner.authSubject?.trim() || email;
  const id = randomUUID();
  const placed = !!input.placement && input.placement !== "POOLED";
  // The placement is made inside the audited transaction (owner access only
  // after the entry is written); dropped again if the provisioning fails.
  let dropPlacement: (() => Promise<unknown>) | undefined;
  const result = await crossTenant(
    ctx,
    { action: "tenant.provision", metadata: metadata ?? { input } },
    async (tx, platformPlacements) => {
      const placements = placed ? platformPlacements() : undefined;
      const ref = requestedPlacement(placements?.admin, id, input.placement, input.placementTarget);
      if (placements) {
        // A taken slug fails before a placement is made for nothing (the unique index still decides).
        if (await tx.tenant.findUnique({ where: { slug }, select: { id: true } })) throw badInput("slug", `Tenant slug "${slug}" is taken`);
        await createPlacement(placements.admin, ref);
        dropPlacement = () => placements.admin.drop(ref);
      }
      const tenant = await tx.tenant.create({
        data: { id, name, slug, plan: input.plan, region, placement: ref.placement, placementServer: ref.server, placementName: ref.name },
      });
      let owner = await tx.user.findUnique({ where: { email } });
      if (!owner) {
        owner = await tx.user.create({ data: { email, name: ownerName, authSubject: subject } });
      }
      await tx.membership.create({ data: { tenantId: tenant.id, userId: owner.id, role: "OWNER" } });
      await upsertLimits(tx, tenant.id, limits);
      // The new tenant's own log starts with its provisioning (access transparency).
      await tx.auditLogEntry.create({
        data: {
          tenantId: tenant.id,
          action: "tenant.provision",
          actorType: "USER",
          actorLabel: ctx.user?.email ?? null,
          crossTenant: true,
          metadata: { slug, plan: input.plan, region: tenant.region },
          requestId: ctx.requestId,
          ip: ctx.ip,
        },
      });
      if (placements) await seedPlacement(placements.admin, ref, id, txQuery(tx));
      return { tenant, owner };
    },
  ).catch(async (err) => {
    await dropPlacement?.().catch(() => {});
    return conflictToInput(err, "slug", `Tenant slug "${slug}" is taken`);
  });
  await platformDirectory(ctx).invalidateTenant(result.tenant.id, result.tenant.slug);
  await platformDirectory(ctx).invalidateMembership(result.tenant.id, result.owner.id);
  return result;
}

/** The tenant of a mutation input; unknown ids are NOT_FOUND before anything is written. */
export async function existingTenant(ctx: Context, tenantId: string) {
  const tenant = await platformDirectory(ctx).tenant(tenantId);
  if (!tenant) throw notFound("Tenant");
  return tenant;
}

/** The audit actions of a change of one tenant (src/db/audit-actions.ts). */
type TenantAction = Extract<AuditAction, `tenant.${string}`>;

/** One audited change of one tenant, then the directory invalidation (also used by src/modules/tenant-config/). */
export async function changeTenant(
  ctx: Context,
  action: TenantAction,
  tenantId: string,
  metadata: unknown,
  change: (tx: PlatformTx, current: Tenant) => Promise<void>,
): Promise<Tenant> {
  await existingTenant(ctx, tenantId);
  const tenant = await crossTenant(ctx, { action, tenantIds: [tenantId], metadata }, async (tx, placements) => {
    await refuseWhileMoving(tx, tenantId);
    const current = await tx.tenant.findUnique({ where: { id: tenantId } });
    if (!current) throw notFound("Tenant");
    await change(tx, current);
    // A platform admin's setTenantIdentityProvider writes the provider columns into the placement too (otherwise they are the tenant's own).
    await syncPlacedTenant(placements, tx, current, { identityProvider: action === "tenant.setIdentityProvider" });
    return tx.tenant.findUniqueOrThrow({ where: { id: tenantId } });
  });
  await platformDirectory(ctx).invalidateTenant(tenant.id, tenant.slug);
  return tenant;
}

const setStatus = (status: TenantStatus, suspendedReason: string | null) => (tx: PlatformTx, t: Tenant) =>
  tx.tenant.update({ where: { id: t.id }, data: { status, suspendedReason } }).then(() => {});

export function suspendTenant(ctx: Context, tenantId: string, reason: string, metadata: unknown) {
  const why = reason.trim();
  if (why.length < 1 || why.length > 500) throw badInput("reason", "reason must be 1 to 500 characters");
  return changeTenant(ctx, "tenant.suspend", tenantId, metadata, setStatus("SUSPENDED", why));
}

/** Back to ACTIVE, from SUSPENDED or PENDING_DELETION (which cancels the deletion). */
export function reactivateTenant(ctx: Context, tenantId: string, metadata: unknown) {
  return changeTenant(ctx, "tenant.reactivate", tenantId, metadata, setStatus("ACTIVE", null));
}

export function changeTenantPlan(ctx: Context, tenantId: string, plan: Plan, metadata: unknown) {
  return changeTenant(ctx, "tenant.changePlan", tenantId, metadata, (tx, t) =>
    tx.tenant.update({ where: { id: t.id }, data: { plan } }).then(() => {}),
  );
}

/** cacheTtlSeconds: undefined = unchanged, null = the plan's TTL again (docs/response-cache.md). */
export function setTenantLimits(ctx: Context, tenantId: string, limits: LimitInput[], metadata: unknown, cacheTtlSeconds?: number | null) {
  const checked = checkLimits("limits", limits);
  if (cacheTtlSeconds != null && (!Number.isInteger(cacheTtlSeconds) || cacheTtlSeconds < 0 || cacheTtlSeconds > MAX_CACHE_TTL_SECONDS)) {
    throw badInput("cacheTtlSeconds", `cacheTtlSeconds must be an integer from 0 to ${MAX_CACHE_TTL_SECONDS}, or null for the plan's`);
  }
  return changeTenant(ctx, "tenant.setLimits", tenantId, metadata, async (tx, t) => {
    await upsertLimits(tx, t.id, checked);
    if (cacheTtlSeconds !== undefined) {
      await tx.tenantCacheGeneration.upsert({
        where: { tenantId: t.id },
        create: { tenantId: t.id, ttlSeconds: cacheTtlSeconds },
        update: { ttlSeconds: cacheTtlSeconds },
      });
    }
    // updated_at records the change on the tenant itself.
    await tx.tenant.update({ where: { id: t.id }, data: { updatedAt: new Date() } });
  });
}

/** PENDING_DELETION: members and keys get TENANT_SUSPENDED; a platform admin can still export, then purge. */
export function scheduleTenantDeletion(ctx: Context, tenantId: string, metadata: unknown) {
  return changeTenant(ctx, "tenant.scheduleDeletion", tenantId, metadata, setStatus("PENDING_DELETION", "Scheduled for deletion"));
}
