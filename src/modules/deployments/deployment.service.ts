import { Prisma } from "../../generated/prisma/client.ts";
import type { DeploymentStatus } from "../../generated/prisma/enums.ts";
import { badInput, notFound, referenceGone } from "../../errors.ts";
import { randomUUID } from "node:crypto";
import { auditRow, noteAudited, type AuditRow } from "../../policy/audit.ts";
import type { TenantContext } from "../../tenancy/context.ts";
import * as v from "../../graphql/validate.ts";
import { publishAfterCommit } from "../../infra/live-events.ts";
import { createDeploymentSql, updateDeploymentStatusSql, type DeploymentRow } from "./deployment.writes.ts";

/**
 * One statement per change (deployment.writes.ts): the checks, the row and
 * its audit entry, on the request's connection, in a savepoint of the
 * mutation's transaction as before (a failed statement undoes this change
 * alone). The live events are published after COMMIT.
 */
export async function createDeployment(
  ctx: TenantContext,
  projectId: string,
  input: { commitSha?: string | null; branch?: string | null },
) {
  const commitSha = v.optionalText("commitSha", input.commitSha, 64);
  const branch = v.optionalText("branch", input.branch, 255);
  const id = randomUUID();
  const audit = { row: auditRow(ctx, { action: "deployment.create", targetType: "Deployment", targetId: id, metadata: { input } }), id: randomUUID() };
  const sql = createDeploymentSql({ tenantId: ctx.tenant.id, id, projectId, commitSha, branch, createdById: ctx.user?.id ?? null }, audit, new Date());
  return ctx.tenantDb
    .transaction(async (tx) => {
      const [deployment] = await tx.$queryRaw<DeploymentRow[]>(sql);
      if (!deployment) throw notFound("Project");
      changed(ctx, tx, deployment, audit);
      return deployment;
    })
    // The project deleted while the statement waited for its row (review W2-1).
    .catch(referenceGone("Project"));
}

/** After the statement wrote the row and its entry: the enforcer is told, the live events wait for COMMIT. */
function changed(ctx: TenantContext, tx: object, d: DeploymentRow, audit: { row: AuditRow; id: string }) {
  publishAfterCommit(tx, ctx.tenant.id, { type: "AuditLogEntry", id: audit.id });
  noteAudited(ctx, audit.row.action);
  publishAfterCommit(tx, ctx.tenant.id, { type: "Deployment", id: d.id, projectId: d.projectId });
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
  const audit = { row: auditRow(ctx, { action: "deployment.updateStatus", targetType: "Deployment", targetId: id, metadata: { input } }), id: randomUUID() };
  const change = { tenantId: ctx.tenant.id, id, status: input.status, ...(input.url !== undefined ? { url } : {}) };
  const sql = updateDeploymentStatusSql(change, audit, new Date());
  return ctx.tenantDb.transaction(async (tx) => {
    const [deployment] = await tx.$queryRaw<DeploymentRow[]>(sql);
    if (!deployment) throw notFound("Deployment");
    changed(ctx, tx, deployment, audit);
    return deployment;
  });
}
