import { Prisma } from "../../generated/prisma/client.ts";
import type { DeploymentStatus } from "../../generated/prisma/enums.ts";
import { badInput, notFound } from "../../errors.ts";
import { writeAudit } from "../../policy/audit.ts";
import type { TenantContext } from "../../tenancy/context.ts";
import * as v from "../../graphql/validate.ts";
import { publishAfterCommit } from "../../infra/live-events.ts";

export async function createDeployment(
  ctx: TenantContext,
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
        tenantId: ctx.tenant.id,
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
    publishAfterCommit(tx, ctx.tenant.id, { type: "Deployment", id: deployment.id, projectId });
    return deployment;
  });
}

/** Child-row conditions of Project.deployments(filter), for the LATERAL statement. */
export function deploymentFilterSql(filter: {
  status?: DeploymentStatus[] | null;
  createdAfter?: Date | null;
  createdBefore?: Date | null;
}) {
  const parts: Prisma.Sql[] = [];
  if (filter.status?.length) parts.push(Prisma.sql`AND c.status = ANY(${filter.status}::"DeploymentStatus"[])`);
  if (filter.createdAfter) parts.push(Prisma.sql`AND c.created_at > ${filter.createdAfter}::timestamptz`);
  if (filter.createdBefore) parts.push(Prisma.sql`AND c.created_at < ${filter.createdBefore}::timestamptz`);
  return parts.length ? Prisma.join(parts, " ") : Prisma.empty;
}

const URL_MAX = 2048;

/** A deployment URL: absolute http(s), at most 2,048 characters. */
export function deploymentUrl(value: string | null | undefined): string | null | undefined {
  if (value == null) return value;
  if (value.length > URL_MAX) throw badInput("url", `url must be at most ${URL_MAX} characters`);
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw badInput("url", "url must be an absolute http(s) URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw badInput("url", "url must be an absolute http(s) URL");
  return value;
}

export async function updateDeploymentStatus(
  ctx: TenantContext,
  id: string,
  input: { status: DeploymentStatus; url?: string | null },
) {
  const url = deploymentUrl(input.url);
  const data: { status: DeploymentStatus; url?: string | null } = { status: input.status };
  if (input.url !== undefined) data.url = url;
  return ctx.tenantDb.transaction(async (tx) => {
    const { count } = await tx.deployment.updateMany({ where: { id }, data });
    if (count === 0) throw notFound("Deployment");
    await writeAudit(tx, ctx, {
      action: "deployment.updateStatus",
      targetType: "Deployment",
      targetId: id,
      metadata: { input },
    });
    const deployment = await tx.deployment.findUniqueOrThrow({ where: { tenantId_id: { tenantId: ctx.tenant.id, id } } });
    publishAfterCommit(tx, ctx.tenant.id, { type: "Deployment", id, projectId: deployment.projectId });
    return deployment;
  });
}
