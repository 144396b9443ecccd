import { Prisma, type Project } from "../../generated/prisma/client.ts";
import { loader, pageRowsSql } from "../../graphql/loaders.ts";
import { findPage, toConnection, type Connection, type PageRequest } from "../../graphql/pagination.ts";
import { subtreeSql, takeSubtree, type SubtreePlan } from "../deployments/deployment.prefetch.ts";
import type { Context } from "../../tenancy/context.ts";

/** Project reads of a request: the page of Query.projects and the per-project deployment counts. */

/** One page of the tenant's projects; `query` is Pothos's selection for the nodes. */
export const projectPage = (ctx: Context, page: PageRequest, where: Prisma.ProjectWhereInput, query: object) =>
  findPage(ctx.db.project, page, where, query);

/** deploymentCount for every project of the page in one GROUP BY (served by the (tenant, project, created_at) index). */
export function deploymentCounts(ctx: Context) {
  return loader(ctx, "project.deploymentCount", async (ids: readonly string[]) => {
    const rows = await ctx.tenantDb.queryRaw<{ projectId: string; n: number }>(Prisma.sql`
      SELECT project_id AS "projectId", count(*)::int AS n FROM deployments
       WHERE tenant_id = ${ctx.tenant!.id}::uuid AND project_id = ANY(${[...ids]}::uuid[])
       GROUP BY project_id`);
    const counts = new Map(rows.map((r) => [r.projectId, r.n]));
    return ids.map((id) => counts.get(id) ?? 0);
  });
}

const PROJECT_COLUMNS = Prisma.raw(
  `c.tenant_id AS "tenantId", c.id, c.name, c.slug, c.description, c.created_at AS "createdAt", c.updated_at AS "updatedAt"`,
);

/**
 * A page of the tenant's projects (no filter) and the subtree `plan` says
 * its nodes select, in one statement (deployment.prefetch.ts): the page as
 * Prisma would read it, then a count and a JSON page of deployments per
 * project row. Its total stays a count on demand.
 */
export async function projectPageWithSubtree(ctx: Context, page: PageRequest, plan: SubtreePlan): Promise<Connection<Project>> {
  const dir = page.orderBy[0]![page.sort.field] === "desc" ? "DESC" : "ASC";
  const subtree = subtreeSql(ctx, plan);
  const rows = await ctx.tenantDb.queryRaw<Project>(Prisma.sql`
    WITH p AS (${pageRowsSql({ table: "projects", columns: PROJECT_COLUMNS, tenantId: ctx.tenant!.id, page })}) ${subtree.with}
    SELECT p.* ${subtree.columns} FROM p
     ORDER BY p."${Prisma.raw(page.sort.field)}" ${Prisma.raw(dir)}, p.id ${Prisma.raw(dir)}`, { last: plan.last });
  return toConnection(
    rows.map((r) => takeSubtree(r, plan)),
    page,
    () => ctx.db.project.count(),
  );
}
