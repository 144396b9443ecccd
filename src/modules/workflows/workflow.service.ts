import { Prisma } from "../../generated/prisma/client.ts";
import type { WorkflowStatus } from "../../generated/prisma/enums.ts";
import { badInput, notFound, referenceGone } from "../../errors.ts";
import { writeAudit } from "../../policy/audit.ts";
import type { TenantContext } from "../../tenancy/context.ts";
import * as v from "../../graphql/validate.ts";
import { publishAfterCommit } from "../../infra/live-events.ts";

/** Largest accepted workflow config, serialized as JSON. */
export const MAX_CONFIG_BYTES = 64 * 1024;

/**
 * A workflow config: a JSON object (not an array or a scalar) of at most
 * 64 KB serialized; null clears it. Returned in the form Prisma writes.
 */
export function config(value: unknown): Prisma.InputJsonValue | typeof Prisma.DbNull | undefined {
  if (value === undefined) return undefined;
  if (value === null) return Prisma.DbNull;
  if (typeof value !== "object" || Array.isArray(value)) throw badInput("config", "config must be a JSON object");
  const size = Buffer.byteLength(JSON.stringify(value), "utf8");
  if (size > MAX_CONFIG_BYTES) throw badInput("config", `config must be at most ${MAX_CONFIG_BYTES} bytes as JSON`);
  return value as Prisma.InputJsonValue;
}

export async function createWorkflow(
  ctx: TenantContext,
  input: { name: string; projectId?: string | null; config?: unknown },
) {
  const name = v.name("name", input.name);
  const cfg = config(input.config);
  // A project deleted between its check and the insert: NOT_FOUND as well (review W2-1).
  return ctx.tenantDb.transaction(async (tx) => {
    if (input.projectId) {
      const project = await tx.project.findFirst({ where: { id: input.projectId }, select: { id: true } });
      if (!project) throw notFound("Project");
    }
    const workflow = await tx.workflow.create({
      data: { tenantId: ctx.tenant.id, name, projectId: input.projectId ?? null, config: cfg },
    });
    await writeAudit(tx, ctx, {
      action: "workflow.create",
      targetType: "Workflow",
      targetId: workflow.id,
      metadata: { name, projectId: input.projectId ?? null },
    });
    publishAfterCommit(tx, ctx.tenant.id, { type: "Workflow", id: workflow.id, projectId: workflow.projectId });
    return workflow;
  }).catch(referenceGone("Project"));
}

export async function updateWorkflow(
  ctx: TenantContext,
  id: string,
  input: { name?: string | null; status?: WorkflowStatus | null; config?: unknown },
) {
  const data: Prisma.WorkflowUpdateManyMutationInput = {};
  if (input.name != null) data.name = v.name("name", input.name);
  if (input.status != null) data.status = input.status;
  const cfg = config(input.config);
  if (cfg !== undefined) data.config = cfg;
  return ctx.tenantDb.transaction(async (tx) => {
    const { count } = await tx.workflow.updateMany({ where: { id }, data });
    if (count === 0) throw notFound("Workflow");
    await writeAudit(tx, ctx, {
      action: "workflow.update",
      targetType: "Workflow",
      targetId: id,
      // The config itself can be large: the audit entry names what changed.
      metadata: { changed: Object.keys(data), name: data.name, status: data.status },
    });
    const workflow = await tx.workflow.findUniqueOrThrow({ where: { tenantId_id: { tenantId: ctx.tenant.id, id } } });
    publishAfterCommit(tx, ctx.tenant.id, { type: "Workflow", id, projectId: workflow.projectId });
    return workflow;
  });
}

export async function deleteWorkflow(ctx: TenantContext, id: string) {
  await ctx.tenantDb.transaction(async (tx) => {
    const workflow = await tx.workflow.findFirst({ where: { id }, select: { name: true } });
    if (!workflow) throw notFound("Workflow");
    await tx.workflow.deleteMany({ where: { id } });
    await writeAudit(tx, ctx, { action: "workflow.delete", targetType: "Workflow", targetId: id, metadata: { name: workflow.name } });
  });
}
