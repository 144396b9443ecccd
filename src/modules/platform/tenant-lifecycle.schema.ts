import { builder } from "../../builder.ts";
import { payloadType } from "../../schema/payload.ts";
import { PlanEnum } from "../../schema/enums.ts";
import { TenantRef } from "../tenants/tenant.schema.ts";
import { UserRef } from "../users/user.schema.ts";
import * as service from "./tenant-lifecycle.service.ts";

const ProvisionOwnerInput = builder.inputType("ProvisionOwnerInput", {
  fields: (t) => ({
    email: t.field({ type: "EmailAddress", required: true }),
    name: t.string(),
    authSubject: t.string(),
  }),
});

const ProvisionTenantInput = builder.inputType("ProvisionTenantInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    slug: t.string({ required: true }),
    plan: t.field({ type: PlanEnum, required: true }),
    region: t.string(),
    owner: t.field({ type: ProvisionOwnerInput, required: true }),
  }),
});

// Payload fields are plain objects from the platform path: they must not be
// re-read through the tenant-scoped client (the admin holds no tenant).
const ProvisionTenantPayload = payloadType("ProvisionTenantPayload", { tenant: { type: TenantRef }, owner: { type: UserRef } });

builder.mutationField("provisionTenant", (t) =>
  t.field({
    type: ProvisionTenantPayload,
    directives: { crossTenant: {}, audit: { action: "tenant.provision" } },
    args: { input: t.arg({ type: ProvisionTenantInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const { tenant, owner } = await service.provisionTenant(ctx, input);
      return { tenant: tenant as never, owner: owner as never };
    },
  }),
);
