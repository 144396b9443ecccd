import { builder } from "../../graphql/builder.ts";
import type { Role } from "../../generated/prisma/enums.ts";
import { RoleEnum } from "../../graphql/enums.ts";
import { unauthenticated } from "../../errors.ts";
import { DEPENDS_ON } from "../../policy/answer-dependence.ts";
import type { TenantInfo, UserInfo } from "../../tenancy/directory.ts";
import { asTenant, TenantRef } from "../tenants/tenant.schema.ts";
import { asUser, MembershipRef, UserRef } from "./user.schema.ts";

interface ViewerShape {
  user: UserInfo;
  tenant: TenantInfo | null;
  role: Role | null;
  isPlatformAdmin: boolean;
}

const Viewer = builder.objectRef<ViewerShape>("Viewer").implement({
  description: "The caller. Works without a tenant (tenant picker).",
  fields: (t) => ({
    user: t.field({ type: UserRef, resolve: (v) => asUser(v.user) }),
    // The caller's own memberships in every tenant: an identity question,
    // answered by the directory for this user alone.
    memberships: t.field({
      type: [MembershipRef],
      resolve: (v, _args, ctx) => ctx.directory.membershipsOf(v.user.id),
    }),
    tenant: t.field({ type: TenantRef, nullable: true, resolve: (v) => v.tenant && asTenant(v.tenant) }),
    role: t.field({ type: RoleEnum, nullable: true, resolve: (v) => v.role }),
    isPlatformAdmin: t.exposeBoolean("isPlatformAdmin"),
  }),
});

builder.queryField("viewer", (t) =>
  t.field({
    type: Viewer,
    // The caller and their role: the response cache keys a document selecting it by both.
    extensions: { [DEPENDS_ON]: "caller" },
    resolve: (_root, _args, ctx) => {
      if (!ctx.user) throw unauthenticated("viewer needs a signed-in user", null);
      return { user: ctx.user, tenant: ctx.tenant, role: ctx.role, isPlatformAdmin: ctx.isPlatformAdmin };
    },
  }),
);
