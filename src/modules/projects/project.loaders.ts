import { Prisma } from "../../generated/prisma/client.ts";
import { loader } from "../../graphql/loaders.ts";
import { findPage, type PageRequest } from "../../graphql/pagination.ts";
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
