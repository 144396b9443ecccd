import { Prisma, type Deployment } from "../../generated/prisma/client.ts";
import type { DeploymentStatus } from "../../generated/prisma/enums.ts";
import { childPageLoader, firstPerParentSql, loader } from "../../graphql/loaders.ts";
import { findPage, type PageRequest } from "../../graphql/pagination.ts";
import type { Context } from "../../tenancy/context.ts";
import { userLoader, visibleUser } from "../users/user.loaders.ts";
import { deploymentFilterSql } from "./deployment.service.ts";

/** Deployment reads of a request: the top-level page, per-project pages and counts. */

/** The conditions of Project.deployments(filter) on the child rows (the project is the parent). */
export interface DeploymentChildFilter {
  status?: DeploymentStatus[] | null;
  createdAfter?: Date | null;
  createdBefore?: Date | null;
}

/** One page of the tenant's deployments (Query.deployments); `query` is Pothos's selection. */
export const deploymentPage = (ctx: Context, page: PageRequest, where: Prisma.DeploymentWhereInput, query: object) =>
  findPage(ctx.db.deployment, page, where, query);

/**
 * A deployment row as raw SQL returns it, named as the Prisma model's
 * fields, with its creator's columns (`creator*`) when the creator is
 * visible: the join applies User's tenant scope (`visibleUser`, as the users
 * loader does); RLS applies as always.
 */
const ROW_COLUMNS = `c.tenant_id AS "tenantId", c.id, c.project_id AS "projectId", c.status::text AS status, c.url,
   c.commit_sha AS "commitSha", c.branch, c.created_by_id AS "createdById",
   c.created_at AS "createdAt", c.updated_at AS "updatedAt"`;
const CREATOR_COLUMNS = `u.id AS "creatorId", u.email AS "creatorEmail", u.name AS "creatorName", u.auth_subject AS "creatorAuthSubject",
   u.is_platform_admin AS "creatorIsPlatformAdmin", u.created_at AS "creatorCreatedAt"`;
/** A deployment's own columns (alias `c`). */
export const DEPLOYMENT_ROW_COLUMNS = Prisma.raw(ROW_COLUMNS);
/** Its creator's columns (alias `u`), named `creator*`. */
export const DEPLOYMENT_CREATOR_COLUMNS = Prisma.raw(CREATOR_COLUMNS);
const DEPLOYMENT_COLUMNS = Prisma.raw(`${ROW_COLUMNS},\n   ${CREATOR_COLUMNS}`);
const creatorJoin = (ctx: Context) => Prisma.sql`LEFT JOIN users u ON u.id = c.created_by_id AND ${visibleUser(ctx, Prisma.raw("u.id"))}`;

export type DeploymentWithCreator = Deployment & {
  creatorId: string | null;
  creatorEmail: string;
  creatorName: string | null;
  creatorAuthSubject: string;
  creatorIsPlatformAdmin: boolean;
  creatorCreatedAt: Date;
};

/** The joined creator of a row as the users loader returns it (null: not visible). */
export const creatorOf = (r: DeploymentWithCreator) =>
  r.creatorId
    ? { id: r.creatorId, email: r.creatorEmail, name: r.creatorName, authSubject: r.creatorAuthSubject, isPlatformAdmin: r.creatorIsPlatformAdmin, createdAt: r.creatorCreatedAt }
    : null;

/** Hands the joined creators to the users loader, so createdBy costs no statement. */
function primeCreators(ctx: Context, rows: DeploymentWithCreator[]): Deployment[] {
  const users = userLoader(ctx);
  for (const r of rows) if (r.createdById) users.prime(r.createdById, creatorOf(r));
  return rows;
}

/** The loader (and prefetch) name of a kind of per-project page: pages that differ only in size share it. */
export const deploymentsLoaderName = (page: PageRequest, filter: DeploymentChildFilter) =>
  `project.deployments:${JSON.stringify([page.orderBy, page.keysets, [filter.status ?? null, filter.createdAfter ?? null, filter.createdBefore ?? null]])}`;

/**
 * Per-project pages for every project of a request, whole rows, in one
 * LATERAL statement. Pages that differ only in size share it (see
 * childPageLoader): the dashboard's `latestDeployment` and
 * `deployments(first: 5)` are one statement.
 */
export function deploymentsOfProjects(ctx: Context, page: PageRequest, filter: DeploymentChildFilter) {
  return childPageLoader<Deployment>(
    ctx,
    deploymentsLoaderName(page, filter),
    async (projectIds, take) =>
      primeCreators(
        ctx,
        await ctx.tenantDb.queryRaw<DeploymentWithCreator>(
          firstPerParentSql({
            table: "deployments",
            parentColumn: "project_id",
            columns: DEPLOYMENT_COLUMNS,
            join: creatorJoin(ctx),
            tenantId: ctx.tenant!.id,
            parentIds: projectIds,
            page: { ...page, take },
            filter: deploymentFilterSql(filter),
          }),
        ),
      ),
    (d) => d.projectId,
  );
}

export function deploymentCountsByProject(ctx: Context, where: Prisma.DeploymentWhereInput) {
  return loader(ctx, `project.deploymentTotal:${JSON.stringify(where)}`, async (ids: readonly string[]) => {
    const rows = await ctx.db.deployment.groupBy({
      by: ["projectId"],
      where: { AND: [where, { projectId: { in: [...ids] } }] },
      _count: { _all: true },
    });
    const counts = new Map(rows.map((r) => [r.projectId, r._count._all]));
    return ids.map((id) => counts.get(id) ?? 0);
  });
}
