import { builder } from "../../graphql/builder.ts";
import { payloadType } from "../../graphql/payload.ts";
import { PlacementEnum, PlanEnum, QuotaResourceEnum } from "../../graphql/enums.ts";
import { tenantIdOf, toGlobalId } from "../../graphql/ids.ts";
import { TenantRef } from "../tenants/tenant.schema.ts";
import { UserRef } from "../users/user.schema.ts";
import { operationMetadata } from "../../policy/audit.ts";
import * as service from "./tenant-lifecycle.service.ts";
import { purgeTenant } from "./tenant-purge.service.ts";
import * as placementService from "./placement.service.ts";

/**
 * Tenant lifecycle mutations (platform admins, @crossTenant, audited).
 * Payload fields are plain rows from the platform path: they are never
 * re-read through the tenant-scoped client (the admin holds no tenant).
 */

const ProvisionOwnerInput = builder.inputType("ProvisionOwnerInput", {
  fields: (t) => ({
    email: t.field({ type: "EmailAddress", required: true }),
    name: t.string(),
    authSubject: t.string(),
  }),
});

const TenantLimitInput = builder.inputType("TenantLimitInput", {
  fields: (t) => ({
    resource: t.field({ type: QuotaResourceEnum, required: true }),
    limit: t.int({ description: "null = unlimited." }),
  }),
});

const ProvisionTenantInput = builder.inputType("ProvisionTenantInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    slug: t.string({ required: true }),
    plan: t.field({ type: PlanEnum, required: true }),
    region: t.string({ description: "Defaults to eu-west-1." }),
    limits: t.field({ type: [TenantLimitInput], description: "Overrides of the plan's default limits." }),
    owner: t.field({ type: ProvisionOwnerInput, required: true }),
    placement: t.field({ type: PlacementEnum, description: "Where its rows live (default POOLED; docs/placement.md)." }),
    placementTarget: t.string({ description: "DATABASE only: the server, `default` (the main one) or a name of PLACEMENT_DATABASE_URLS." }),
  }),
});

const SuspendTenantInput = builder.inputType("SuspendTenantInput", {
  fields: (t) => ({ tenantId: t.id({ required: true }), reason: t.string({ required: true }) }),
});
const ReactivateTenantInput = builder.inputType("ReactivateTenantInput", {
  fields: (t) => ({ tenantId: t.id({ required: true }) }),
});
const ChangeTenantPlanInput = builder.inputType("ChangeTenantPlanInput", {
  fields: (t) => ({ tenantId: t.id({ required: true }), plan: t.field({ type: PlanEnum, required: true }) }),
});
const SetTenantLimitsInput = builder.inputType("SetTenantLimitsInput", {
  fields: (t) => ({
    tenantId: t.id({ required: true }),
    limits: t.field({ type: [TenantLimitInput], required: true }),
    cacheTtlSeconds: t.int({
      description: "Response cache TTL of the tenant in seconds (0 = until invalidated); null = the plan's (CACHE_TTL_<PLAN>); omitted = unchanged.",
    }),
  }),
});
const ScheduleTenantDeletionInput = builder.inputType("ScheduleTenantDeletionInput", {
  fields: (t) => ({ tenantId: t.id({ required: true }) }),
});
const PurgeTenantInput = builder.inputType("PurgeTenantInput", {
  fields: (t) => ({ tenantId: t.id({ required: true }) }),
});

const MoveTenantInput = builder.inputType("MoveTenantInput", {
  fields: (t) => ({
    tenantId: t.id({ required: true }),
    placement: t.field({ type: PlacementEnum, required: true }),
    placementTarget: t.string({ description: "DATABASE only: the server, `default` (the main one) or a name of PLACEMENT_DATABASE_URLS." }),
  }),
});

const ProvisionTenantPayload = payloadType("ProvisionTenantPayload", { tenant: { type: TenantRef }, owner: { type: UserRef } });
const SuspendTenantPayload = payloadType("SuspendTenantPayload", { tenant: { type: TenantRef } });
const ReactivateTenantPayload = payloadType("ReactivateTenantPayload", { tenant: { type: TenantRef } });
const ChangeTenantPlanPayload = payloadType("ChangeTenantPlanPayload", { tenant: { type: TenantRef } });
const SetTenantLimitsPayload = payloadType("SetTenantLimitsPayload", { tenant: { type: TenantRef } });
const ScheduleTenantDeletionPayload = payloadType("ScheduleTenantDeletionPayload", { tenant: { type: TenantRef } });
const MoveTenantPayload = builder.objectRef<Awaited<ReturnType<typeof placementService.moveTenant>>>("MoveTenantPayload").implement({
  fields: (t) => ({
    tenant: t.field({ type: TenantRef, resolve: (p) => p.tenant }),
    movedRows: t.exposeInt("movedRows", { description: "Rows copied to the new placement." }),
    durationMs: t.exposeInt("durationMs", { description: "From the move's start (the target created) to the old copy removed; writesRefusedMs in the audit entry is the fence's part." }),
  }),
});
const PurgeTenantPayload = payloadType("PurgeTenantPayload", { purgedTenantId: { type: "ID" } });


builder.mutationFields((t) => ({
  provisionTenant: t.field({
    type: ProvisionTenantPayload,
    directives: { crossTenant: {}, audit: { action: "tenant.provision" } },
    args: { input: t.arg({ type: ProvisionTenantInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => {
      const { tenant, owner } = await service.provisionTenant(ctx, input, operationMetadata(info, { input }));
      return { tenant: tenant, owner: owner };
    },
  }),
  suspendTenant: t.field({
    type: SuspendTenantPayload,
    directives: { crossTenant: {}, audit: { action: "tenant.suspend" } },
    args: { input: t.arg({ type: SuspendTenantInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => ({
      tenant: await service.suspendTenant(ctx, tenantIdOf(input), input.reason, operationMetadata(info, { input })),
    }),
  }),
  reactivateTenant: t.field({
    type: ReactivateTenantPayload,
    directives: { crossTenant: {}, audit: { action: "tenant.reactivate" } },
    args: { input: t.arg({ type: ReactivateTenantInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => ({
      tenant: await service.reactivateTenant(ctx, tenantIdOf(input), operationMetadata(info, { input })),
    }),
  }),
  changeTenantPlan: t.field({
    type: ChangeTenantPlanPayload,
    directives: { crossTenant: {}, audit: { action: "tenant.changePlan" } },
    args: { input: t.arg({ type: ChangeTenantPlanInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => ({
      tenant: await service.changeTenantPlan(ctx, tenantIdOf(input), input.plan, operationMetadata(info, { input })),
    }),
  }),
  setTenantLimits: t.field({
    type: SetTenantLimitsPayload,
    directives: { crossTenant: {}, audit: { action: "tenant.setLimits" } },
    args: { input: t.arg({ type: SetTenantLimitsInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => ({
      tenant: await service.setTenantLimits(ctx, tenantIdOf(input), input.limits, operationMetadata(info, { input }), input.cacheTtlSeconds),
    }),
  }),
  scheduleTenantDeletion: t.field({
    type: ScheduleTenantDeletionPayload,
    directives: { crossTenant: {}, audit: { action: "tenant.scheduleDeletion" } },
    args: { input: t.arg({ type: ScheduleTenantDeletionInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => ({
      tenant: await service.scheduleTenantDeletion(ctx, tenantIdOf(input), operationMetadata(info, { input })),
    }),
  }),
  moveTenant: t.field({
    type: MoveTenantPayload,
    description: "Moves the tenant's rows live to another placement (docs/placement.md): its writes get TENANT_MOVING meanwhile; any verification failure leaves it where it was.",
    directives: { crossTenant: {}, audit: { action: "tenant.move" } },
    args: { input: t.arg({ type: MoveTenantInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) =>
      placementService.moveTenant(ctx, tenantIdOf(input), input.placement, input.placementTarget, operationMetadata(info, { input })),
  }),
  purgeTenant: t.field({
    type: PurgeTenantPayload,
    directives: { crossTenant: {}, audit: { action: "tenant.purge" } },
    args: { input: t.arg({ type: PurgeTenantInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => {
      const { purgedTenantId } = await purgeTenant(ctx, tenantIdOf(input), operationMetadata(info, { input }));
      return { purgedTenantId: toGlobalId("Tenant", purgedTenantId) };
    },
  }),
}));
