import { builder } from "../../graphql/builder.ts";
import { RoleEnum } from "../../graphql/enums.ts";
import { uuidOrNone } from "../../graphql/ids.ts";
import { TenantRef } from "../tenants/tenant.schema.ts";
import { userLoader } from "./user.loaders.ts";

export const UserRef = builder.prismaNode("User", {
  id: { field: "id" },
  // The tenant-scoped client only finds members of the current tenant.
  findUnique: (id) => ({ id: uuidOrNone(id) }),
  nullable: true,
  fields: (t) => ({
    email: t.exposeString("email"),
    name: t.exposeString("name", { nullable: true }),
  }),
});

export const MembershipRef = builder.prismaNode("Membership", {
  id: { resolve: (m) => m.id },
  findUnique: (id, ctx) => ({ tenantId_id: { tenantId: ctx.tenant?.id ?? uuidOrNone(""), id: uuidOrNone(id) } }),
  nullable: true,
  fields: (t) => ({
    role: t.expose("role", { type: RoleEnum }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    // Resolved without the tenant-scoped client when it is the caller's own
    // membership, so `viewer.memberships` works across the caller's tenants.
    user: t.field({
      type: UserRef,
      resolve: async (m, _args, ctx) => {
        if (ctx.user && m.userId === ctx.user.id) return ctx.user as never;
        const user = await userLoader(ctx).load(m.userId);
        if (!user) throw new Error("membership without a visible user");
        return user;
      },
    }),
    tenant: t.field({
      type: TenantRef,
      resolve: async (m, _args, ctx) => {
        const tenant = await ctx.directory.tenant(m.tenantId);
        if (!tenant) throw new Error("membership without a tenant");
        return tenant as never;
      },
    }),
  }),
});
