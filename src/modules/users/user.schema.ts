import { builder } from "../../graphql/builder.ts";
import { Prisma, type User } from "../../generated/prisma/client.ts";
import { RoleEnum } from "../../graphql/enums.ts";
import { uuidOrNone } from "../../graphql/ids.ts";
import { byKeys, loader } from "../../graphql/loaders.ts";
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

/**
 * Users by id, batched: one statement on the request's connection. Raw SQL
 * bypasses wall 1, so the statement applies the tenant scope of User itself
 * (a member of the current tenant, or the caller); RLS applies as always.
 */
export function userLoader(ctx: Context) {
  return loader(ctx, "users", async (ids: readonly string[]) => {
    const tenantId = ctx.tenant!.id;
    const rows = await ctx.tenantDb.queryRaw<User>(Prisma.sql`
      SELECT u.id, u.email, u.name, u.auth_subject AS "authSubject", u.is_platform_admin AS "isPlatformAdmin", u.created_at AS "createdAt"
        FROM users u
       WHERE u.id = ANY(${[...ids]}::uuid[])
         AND (u.id = ${ctx.user?.id ?? null}::uuid
              OR EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id AND m.tenant_id = ${tenantId}::uuid))`);
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
