import type { User } from "../../generated/prisma/client.ts";
import { builder } from "../../graphql/builder.ts";
import { RoleEnum } from "../../graphql/enums.ts";
import { uuidOrNone } from "../../graphql/ids.ts";
import { asTenant, TenantRef } from "../tenants/tenant.schema.ts";
import { userLoader } from "./user.loaders.ts";

/** What User's fields read; the directory's user (`ctx.user`) carries these. */
export interface UserParent {
  id: string;
  email: string;
  name: string | null;
}

/** A user as UserRef's parent: Pothos types it as the whole Prisma row, but the fields read only a UserParent. */
export const asUser = (user: UserParent) => user as User;

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
        if (ctx.user && m.userId === ctx.user.id) return asUser(ctx.user);
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
        return asTenant(tenant);
      },
    }),
  }),
});
