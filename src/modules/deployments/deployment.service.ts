import { Prisma } from "../../generated/prisma/client.ts";
import type { DeploymentStatus } from "../../generated/prisma/enums.ts";
import { notFound } from "../../errors.ts";
import { writeAudit } from "../../policy/audit.ts";
import type { Context } from "../../tenancy/context.ts";
import * as v from "../../schema/validate.ts";
import type { PageRequest } from "../../schema/pagination.ts";

export async function createDeployment(
  ctx: Context,
  projectId: string,
  input: { commitSha?: string | null; branch?: string | null },
) {
  const commitSha = v.optionalText("commitSha", input.commitSha, 64);
  const branch = v.optionalText("branch", input.branch, 255);
  return ctx.tenantDb.transaction(async (tx) => {
    const project = await tx.project.findFirst({ where: { id: projectId }, select: { id: true } });
    if (!project) throw notFound("Project");
    const deployment = await tx.deployment.create({
      data: {
        tenantId: ctx.tenant!.id,
        projectId,
        commitSha,
        branch,
        createdById: ctx.user?.id ?? null,
      },
    });
    await writeAudit(tx, ctx, {
      action: "deployment.create",
      targetType: "Deployment",
      targetId: deployment.id,
      metadata: { input },
    });
    return deployment;
  });
}

const SORT_COLUMNS = { createdAt: "created_at", updatedAt: "updated_at", name: "name" } as const;

/**
 * The first N deployments of each of many projects, in one statement: a
 * LATERAL join that walks the (tenant_id, project_id, created_at, id) index
 * once per project. Prisma would fetch every child row and slice in memory.
 */
export function firstDeploymentsPerProjectSql(
  tenantId: string,
  projectIds: string[],
  page: PageRequest,
  statuses: DeploymentStatus[] | null,
) {
  const col = Prisma.raw(`d.${SORT_COLUMNS[page.sort.field]}`);
  const dir = Prisma.raw(page.orderBy[0]![page.sort.field] === "desc" ? "DESC" : "ASC");
  const statusFilter = statuses?.length
    ? Prisma.sql`AND d.status = ANY(${statuses}::"DeploymentStatus"[])`
    : Prisma.empty;
  const keyset = page.keyset
    ? Prisma.sql`AND (${col}, d.id) ${Prisma.raw(page.keyset.op)} (${new Date(page.keyset.value!)}::timestamptz, ${page.keyset.id}::uuid)`
    : Prisma.empty;
  return Prisma.sql`
    SELECT x.id, p.id AS "projectId"
      FROM unnest(${projectIds}::uuid[]) AS p(id)
      CROSS JOIN LATERAL (
        SELECT d.id FROM deployments d
         WHERE d.tenant_id = ${tenantId}::uuid AND d.project_id = p.id ${statusFilter} ${keyset}
         ORDER BY ${col} ${dir}, d.id ${dir}
         LIMIT ${page.take}
      ) x`;
}
