import { Prisma } from "../../generated/prisma/client.ts";
import { badInput, notFound } from "../../errors.ts";
import { writeAudit } from "../../policy/audit.ts";
import { checkDeclaredCountQuota } from "../../policy/enforcer.ts";
import type { TenantContext } from "../../tenancy/context.ts";
import * as v from "../../graphql/validate.ts";

/** Unique-key conflicts are the caller's problem, not a 500. */
export function conflictToInput(err: unknown, field: string, message: string): never {
  if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002") throw badInput(field, message);
  throw err;
}

export async function createProject(
  ctx: TenantContext,
  input: { name: string; slug?: string | null; description?: string | null },
) {
  const name = v.name("name", input.name);
  const slug = input.slug != null ? v.slug("slug", input.slug) : v.slugify(name);
  const description = v.optionalText("description", input.description, 2000);
  return ctx.tenantDb
    .transaction(async (tx) => {
      const project = await tx.project.create({
        data: { tenantId: ctx.tenant.id, name, slug, description },
      });
      // @quota(PROJECTS): counted under its lock with the new row, in this transaction.
      await checkDeclaredCountQuota(tx, ctx, true);
      await writeAudit(tx, ctx, {
        action: "project.create",
        targetType: "Project",
        targetId: project.id,
        metadata: { input },
      });
      return project;
    })
    .catch((err) => conflictToInput(err, "slug", `A project with slug "${slug}" already exists`));
}

export async function updateProject(
  ctx: TenantContext,
  id: string,
  input: { name?: string | null; description?: string | null },
) {
  const data: { name?: string; description?: string | null } = {};
  if (input.name != null) data.name = v.name("name", input.name);
  if (input.description !== undefined) data.description = v.optionalText("description", input.description, 2000);
  return ctx.tenantDb.transaction(async (tx) => {
    const { count } = await tx.project.updateMany({ where: { id }, data });
    if (count === 0) throw notFound("Project");
    await writeAudit(tx, ctx, { action: "project.update", targetType: "Project", targetId: id, metadata: { input } });
    return tx.project.findUniqueOrThrow({ where: { tenantId_id: { tenantId: ctx.tenant.id, id } } });
  });
}

/**
 * Deletes a project and its deployments (FK cascade). Workflows outlive
 * their project (the FK is ON DELETE RESTRICT so none is lost by accident):
 * they are detached in the same transaction.
 */
export async function deleteProject(ctx: TenantContext, id: string) {
  await ctx.tenantDb.transaction(async (tx) => {
    const project = await tx.project.findFirst({ where: { id }, select: { id: true, name: true, slug: true } });
    if (!project) throw notFound("Project");
    const detached = await tx.workflow.updateMany({ where: { projectId: id }, data: { projectId: null } });
    await tx.project.deleteMany({ where: { id } });
    await writeAudit(tx, ctx, {
      action: "project.delete",
      targetType: "Project",
      targetId: id,
      metadata: { name: project.name, slug: project.slug, detachedWorkflows: detached.count },
    });
  });
}
