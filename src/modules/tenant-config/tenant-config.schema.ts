import { builder } from "../../graphql/builder.ts";
import { tenantIdOf } from "../../graphql/ids.ts";
import { payloadType } from "../../graphql/payload.ts";
import { operationMetadata } from "../../policy/audit.ts";
import { effectiveFeatures } from "../../tenancy/features.ts";
import { TenantRef, type TenantParent } from "../tenants/tenant.schema.ts";
import * as service from "./tenant-config.service.ts";

/**
 * Per-tenant configuration (SPEC section 10; docs/tenant-config.md):
 * `Tenant.features` and `Tenant.domain`, and the three mutations that set
 * features (platform), the custom domain (platform) and the tenant's own
 * identity provider (its OWNER with `sso`, or a platform admin).
 */

builder.prismaObjectFields(TenantRef, (t) => ({
  features: t.field({
    type: ["String"],
    description: "The plan features the tenant has: its plan's, or a platform admin's override (setTenantFeatures).",
    // The current tenant (`tenant`) carries the features PostgreSQL reported
    // for this request; a row (node, payloads) has its override and plan.
    resolve: (tenant) => {
      const { features } = tenant as TenantParent;
      return features ? [...features] : effectiveFeatures(tenant.plan, tenant.featureOverrides);
    },
  }),
  domain: t.string({
    nullable: true,
    description: "The tenant's custom domain: requests whose Host is this domain are the tenant's (setTenantDomain).",
    resolve: (tenant) => tenant.domain ?? null,
  }),
}));

const SetTenantFeaturesInput = builder.inputType("SetTenantFeaturesInput", {
  fields: (t) => ({
    tenantId: t.id({ required: true }),
    features: t.stringList({ description: "The tenant's feature set; null = its plan's default." }),
  }),
});
const SetTenantIdentityProviderInput = builder.inputType("SetTenantIdentityProviderInput", {
  fields: (t) => ({
    tenantId: t.id({ required: true }),
    issuer: t.string({ description: "The `iss` of the provider's tokens (unique across tenants); null with jwksUrl null removes the provider." }),
    jwksUrl: t.string({ description: "Where the provider publishes its keys (https)." }),
    audience: t.string({ description: "The `aud` the provider's tokens must carry (required with issuer and jwksUrl)." }),
  }),
});
const SetTenantDomainInput = builder.inputType("SetTenantDomainInput", {
  fields: (t) => ({
    tenantId: t.id({ required: true }),
    domain: t.string({ description: "A host name such as api.example.com (unique); null removes it." }),
  }),
});

const SetTenantFeaturesPayload = payloadType("SetTenantFeaturesPayload", { tenant: { type: TenantRef } });
const SetTenantIdentityProviderPayload = payloadType("SetTenantIdentityProviderPayload", { tenant: { type: TenantRef } });
const SetTenantDomainPayload = payloadType("SetTenantDomainPayload", { tenant: { type: TenantRef } });


builder.mutationFields((t) => ({
  setTenantFeatures: t.field({
    type: SetTenantFeaturesPayload,
    description: "Platform admins: the tenant's feature set (null = its plan's).",
    directives: { crossTenant: {}, audit: { action: "tenant.setFeatures" } },
    args: { input: t.arg({ type: SetTenantFeaturesInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => ({
      tenant: (await service.setTenantFeatures(ctx, tenantIdOf(input), input.features, operationMetadata(info, { input }))),
    }),
  }),
  // OWNER in the tenant, or (no tenant) a platform admin through @crossTenant:
  // the service takes a plain Context and checks which one it is.
  setTenantIdentityProvider: t.authOrCrossTenant("OWNER").field({
    type: SetTenantIdentityProviderPayload,
    description: "The tenant's own identity provider: its OWNER (needs sso) or a platform admin.",
    directives: { feature: { name: "sso" }, audit: { action: "tenant.setIdentityProvider" } },
    args: { input: t.arg({ type: SetTenantIdentityProviderInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => ({
      tenant: (await service.setTenantIdentityProvider(ctx, tenantIdOf(input), input, operationMetadata(info, { input }))),
    }),
  }),
  setTenantDomain: t.field({
    type: SetTenantDomainPayload,
    description: "Platform admins: the tenant's custom domain (needs custom_domain; null removes it).",
    directives: { crossTenant: {}, audit: { action: "tenant.setDomain" } },
    args: { input: t.arg({ type: SetTenantDomainInput, required: true }) },
    resolve: async (_root, { input }, ctx, info) => ({
      tenant: (await service.setTenantDomain(ctx, tenantIdOf(input), input.domain, operationMetadata(info, { input }))),
    }),
  }),
}));
