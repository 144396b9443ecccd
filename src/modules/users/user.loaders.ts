import { Prisma, type User } from "../../generated/prisma/client.ts";
import { byKeys, loader } from "../../graphql/loaders.ts";
import type { Context } from "../../tenancy/context.ts";

/**
 * Users by id, batched: one statement on the request's connection. Raw SQL
 * bypasses wall 1, so the statement applies the tenant scope of User itself
 * with the request's tenant and caller: `visibleUser` (the SQL function the
 * RLS policy calls too); RLS applies as always.
 */
export function userLoader(ctx: Context) {
  return loader(ctx, "users", async (ids: readonly string[]) => {
    const rows = await ctx.tenantDb.queryRaw<User>(Prisma.sql`
      SELECT u.id, u.email, u.name, u.auth_subject AS "authSubject", u.is_platform_admin AS "isPlatformAdmin", u.created_at AS "createdAt"
        FROM users u
       WHERE u.id = ANY(${[...ids]}::uuid[]) AND ${visibleUser(ctx, Prisma.raw("u.id"))}`);
    return byKeys(ids, rows, (r) => r.id);
  });
}

/**
 * "The user `column` names is visible to the request's tenant": the one SQL
 * function app_visible_user (prisma/migrations/20261202002000_visible_user),
 * called with the request's tenant and caller; the Prisma scope of User
 * (src/tenancy/tenant-scope-reads.ts) is its mirror.
 */
export const visibleUser = (ctx: Context, column: Prisma.Sql) =>
  Prisma.sql`app_visible_user(${column}, ${ctx.tenant!.id}::uuid, ${ctx.user?.id ?? null}::uuid)`;
