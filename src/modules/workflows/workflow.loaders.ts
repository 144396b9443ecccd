import { Prisma, type Workflow } from "../../generated/prisma/client.ts";
import { childPageLoader, firstPerParentSql, loader } from "../../graphql/loaders.ts";
import { findPage, type PageRequest } from "../../graphql/pagination.ts";
import type { Context } from "../../tenancy/context.ts";

/** Workflow reads of a request: the page of Query.workflows, each project's page and total. */

/** One page of the tenant's workflows; `query` is Pothos's selection for the nodes. */
export const workflowPage = (ctx: Context, page: PageRequest, where: Prisma.WorkflowWhereInput, query: object) =>
  findPage(ctx.db.workflow, page, where, query);

/** A workflow row as raw SQL returns it, named as the Prisma model's fields. */
const WORKFLOW_COLUMNS = Prisma.raw(
  `c.tenant_id AS "tenantId", c.id, c.project_id AS "projectId", c.name, c.status::text AS status,
   c.config, c.created_at AS "createdAt", c.updated_at AS "updatedAt"`,
);

/** Each project's page of workflows, for every project of the request, in one LATERAL statement. */
export function workflowsOfProjects(ctx: Context, page: PageRequest) {
  return childPageLoader<Workflow>(
    ctx,
    `project.workflows:${JSON.stringify([page.orderBy, page.keysets])}`,
    (projectIds, take) =>
      ctx.tenantDb.queryRaw<Workflow>(
        firstPerParentSql({
          table: "workflows",
          parentColumn: "project_id",
          columns: WORKFLOW_COLUMNS,
          tenantId: ctx.tenant!.id,
          parentIds: projectIds,
          page: { ...page, take },
        }),
      ),
    (w) => w.projectId,
  );
}

export function workflowCountsByProject(ctx: Context) {
  return loader(ctx, "project.workflowTotal", async (ids: readonly string[]) => {
    const rows = await ctx.db.workflow.groupBy({
      by: ["projectId"],
      where: { projectId: { in: [...ids] } },
      _count: { _all: true },
    });
    const counts = new Map(rows.map((r) => [r.projectId, r._count._all]));
    return ids.map((id) => counts.get(id) ?? 0);
  });
}
