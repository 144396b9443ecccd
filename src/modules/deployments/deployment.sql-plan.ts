import { Prisma } from "../../generated/prisma/client.ts";
import { pageOrderSql, pageRowsSql } from "../../graphql/loaders.ts";
import type { SqlPlans } from "../../graphql/sql-plan.ts";
import { visibleUser } from "../users/user.loaders.ts";
import { latestDeploymentPage, projectDeploymentsPage, type ProjectDeploymentsArgs } from "./deployment.prefetch.ts";
import { deploymentFilterSql } from "./deployment.service.ts";

/**
 * Deployment's fields and a project's deployments, declared for SQL-planned
 * queries (docs/sql-plans.md). The pages are the loaders' (the same
 * PageRequest and filter, pageRowsSql with the tenant filter), the creator
 * the users loader's (`app_visible_user` with the request's tenant and
 * caller; RLS as always), the totals the resolver's count with the same
 * filter. Cursors (after/before/last) and `filter.projectId` (which only the
 * total reads there) leave the query to the resolvers.
 */

const ownRows = Prisma.raw("c.*");

export const deploymentSqlPlans: SqlPlans = {
  Project: {
    // The first row of the newest-first page (the resolver reads the page's first row).
    latestDeployment: {
      kind: "object",
      row: (project, ctx) =>
        pageRowsSql({ table: "deployments", columns: ownRows, tenantId: ctx.tenant.id, page: { ...latestDeploymentPage(ctx), take: 1 } }, Prisma.sql`AND c.project_id = ${project}.id`),
    },
    deployments: {
      kind: "connection",
      page: (project, ctx, raw) => {
        const args = raw as ProjectDeploymentsArgs & { filter?: { projectId?: unknown } | null };
        if (!project || args.after != null || args.before != null || args.last != null || args.filter?.projectId != null) return null;
        const { page, filter } = projectDeploymentsPage(ctx, args);
        const tenantId = ctx.tenant.id;
        const parent = Prisma.sql`AND c.project_id = ${project}.id`;
        return {
          rows: pageRowsSql({ table: "deployments", columns: ownRows, tenantId, page, filter: deploymentFilterSql(filter) }, parent),
          order: (alias) => pageOrderSql(page, alias),
          size: page.size,
          total: Prisma.sql`SELECT count(*) FROM deployments c WHERE c.tenant_id = ${tenantId}::uuid ${parent} ${deploymentFilterSql(filter)}`,
        };
      },
    },
  },
  Deployment: {
    id: { kind: "column", column: "id", format: "globalId" },
    status: { kind: "column", column: "status", format: "enum" },
    url: { kind: "column", column: "url", format: "string" },
    commitSha: { kind: "column", column: "commit_sha", format: "string" },
    branch: { kind: "column", column: "branch", format: "string" },
    createdAt: { kind: "column", column: "created_at", format: "dateTime" },
    updatedAt: { kind: "column", column: "updated_at", format: "dateTime" },
    // The creators of every deployment the statement reads, each checked once (as the prefetch's `u`).
    createdBy: {
      kind: "lookup",
      key: "created_by_id",
      column: "id",
      rows: (keys, ctx) => Prisma.sql`SELECT u.* FROM users u WHERE u.id IN (${keys}) AND ${visibleUser(ctx, Prisma.raw("u.id"))}`,
    },
  },
};
