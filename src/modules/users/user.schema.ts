import { builder } from "../../builder.ts";
import { RoleEnum } from "../../schema/enums.ts";
import { uuidOrNone } from "../../schema/ids.ts";
import { byKeys, loader } from "../../schema/loaders.ts";
import type { Context } from "../../tenancy/context.ts";
import { TenantRef } from "../tenants/tenant.schema.ts";

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

/** Users by id, batched, through the tenant-scoped client. */
export function userLoader(ctx: Context) {
  return loader(ctx, "users", async (ids: readonly string[]) => {
    const rows = await ctx.db.user.findMany({ where: { id: { in: [...ids] } } });
    return byKeys(ids, rows, (r) => r.id);
  });
}

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
        const tenant = await ctx.deps.directory.tenant(m.tenantId);
        if (!tenant) throw new Error("membership without a tenant");
        return tenant as never;
      },
    }),
  }),
});
