import { Prisma, type User } from "../../generated/prisma/client.ts";
import { byKeys, loader } from "../../graphql/loaders.ts";
import type { Context } from "../../tenancy/context.ts";

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
