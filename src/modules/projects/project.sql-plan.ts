import { Prisma } from "../../generated/prisma/client.ts";
import { pageOrderSql, pageRowsSql } from "../../graphql/loaders.ts";
import { pageRequest, sortFrom, type ConnectionArgs } from "../../graphql/pagination.ts";
import type { SqlPlans } from "../../graphql/sql-plan.ts";

/**
 * Query.projects and Project's own fields, declared for SQL-planned queries
 * (docs/sql-plans.md): the same page as the resolver's (pageRequest, keyset
 * order, the tenant filter; RLS as always), the same count. A search, or
 * after/before/last, leaves the query to the resolvers.
 */

interface ProjectsArgs extends ConnectionArgs {
  filter?: { search?: string | null } | null;
  orderBy?: { field: string; direction: "ASC" | "DESC" } | null;
}

export const projectSqlPlans: SqlPlans = {
  Query: {
    projects: {
      kind: "connection",
      page: (_parent, ctx, raw) => {
        const args = raw as ProjectsArgs;
        if (args.after != null || args.before != null || args.last != null || args.filter?.search?.trim()) return null;
        const page = pageRequest(ctx.cursors, args, sortFrom(args.orderBy), "Project");
        const tenantId = ctx.tenant.id;
        return {
          rows: pageRowsSql({ table: "projects", columns: Prisma.raw("c.*"), tenantId, page }),
          order: (alias) => pageOrderSql(page, alias),
          size: page.size,
          total: Prisma.sql`SELECT count(*) FROM projects c WHERE c.tenant_id = ${tenantId}::uuid`,
        };
      },
    },
  },
  Project: {
    id: { kind: "column", column: "id", format: "globalId" },
    name: { kind: "column", column: "name", format: "string" },
    slug: { kind: "column", column: "slug", format: "string" },
    description: { kind: "column", column: "description", format: "string" },
    createdAt: { kind: "column", column: "created_at", format: "dateTime" },
    updatedAt: { kind: "column", column: "updated_at", format: "dateTime" },
    deploymentCount: {
      kind: "int",
      sql: (row, ctx) => Prisma.sql`SELECT count(*) FROM deployments n WHERE n.tenant_id = ${ctx.tenant.id}::uuid AND n.project_id = ${row}.id`,
    },
  },
};
