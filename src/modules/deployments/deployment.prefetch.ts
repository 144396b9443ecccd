import { getArgumentValues, isObjectType, type FieldNode, type GraphQLResolveInfo } from "graphql";
import { Prisma, type Deployment, type Project } from "../../generated/prisma/client.ts";
import type { DeploymentStatus } from "../../generated/prisma/enums.ts";
import { pageRowsSql } from "../../graphql/loaders.ts";
import { DEFAULT_SORT, pageRequest, sortFrom, type ConnectionArgs, type PageRequest } from "../../graphql/pagination.ts";
import type { Context } from "../../tenancy/context.ts";
import { visibleUser } from "../users/user.loaders.ts";
import {
  creatorOf,
  DEPLOYMENT_CREATOR_COLUMNS,
  DEPLOYMENT_ROW_COLUMNS,
  deploymentsLoaderName,
  type DeploymentChildFilter,
  type DeploymentWithCreator,
} from "./deployment.loaders.ts";
import { deploymentFilterSql } from "./deployment.service.ts";
import { fieldsOf, readsNothingElse } from "./deployment.prefetch-last.ts";

/**
 * The dashboard's subtree in the statement of its project page (docs/performance.md,
 * "One statement per dashboard"): when `Query.projects` resolves, it looks
 * at what its nodes select and, for `deploymentCount`, `latestDeployment`
 * and `deployments(...)` (one kind of page: the same sort, cuts and
 * filter), adds to the page's SELECT a count and a JSON array of each
 * project's first deployments with their creators, built by PostgreSQL. The
 * resolvers then read them from the project row, synchronously, instead of
 * three more statements through loaders.
 *
 * It is only an earlier read of the same rows: the same tenant-scoped
 * transaction, the same tenant filter and creator visibility
 * (`app_visible_user`) as the loaders, RLS as always. Anything it cannot
 * express (directives on the path, two kinds of deployment pages, an
 * argument it cannot read) leaves the plan without it and the loaders work
 * as before.
 */

/** The Project.deployments arguments this file and the resolver read. */
export interface ProjectDeploymentsArgs extends ConnectionArgs {
  filter?: { status?: DeploymentStatus[] | null; createdAfter?: Date | null; createdBefore?: Date | null } | null;
  orderBy?: { field: string; direction: "ASC" | "DESC" } | null;
}

/** The page and child filter of Project.deployments(args) (projectId is implied by the parent). */
export function projectDeploymentsPage(ctx: Pick<Context, "cursors">, args: ProjectDeploymentsArgs): { page: PageRequest; filter: DeploymentChildFilter } {
  const page = pageRequest(ctx.cursors, args, sortFrom(args.orderBy), "Deployment");
  const filter: DeploymentChildFilter = {
    status: args.filter?.status ?? null,
    createdAfter: args.filter?.createdAfter ?? null,
    createdBefore: args.filter?.createdBefore ?? null,
  };
  return { page, filter };
}

/** The page of Project.latestDeployment: the first deployment, newest first. */
export const latestDeploymentPage = (ctx: Pick<Context, "cursors">) => pageRequest(ctx.cursors, { first: 1 }, DEFAULT_SORT, "Deployment");

/** What a project page's statement adds for its nodes. */
export interface SubtreePlan {
  count: boolean;
  /** Deployment rows per project: one kind of page (loader name), the largest size asked for. */
  deployments: { name: string; page: PageRequest; filter: DeploymentChildFilter; take: number } | null;
  /** The page's statement is the operation's last: it is sent with the COMMIT (TenantDb.queryRaw `last`). */
  last: boolean;
}

const PREFETCHED = Symbol("prefetched subtree");

interface Prefetched {
  count?: number;
  deployments?: { name: string; take: number; rows: Deployment[] };
}

type WithSubtree = { [PREFETCHED]?: Prefetched };

/** The fields selected under `nodes` (named `name` when given). */
function childFields(nodes: readonly FieldNode[], info: GraphQLResolveInfo, name?: string): FieldNode[] | null {
  const out: FieldNode[] = [];
  for (const n of nodes) {
    const fields = fieldsOf(n.selectionSet, info);
    if (!fields) return null;
    out.push(...(name ? fields.filter((f) => f.name.value === name) : fields));
  }
  return out;
}

/**
 * What the nodes of `Query.projects` select of the subtree (info is the
 * projects field's); null when nothing or when it cannot tell.
 */
export function subtreePlan(ctx: Context, info: GraphQLResolveInfo): SubtreePlan | null {
  const edges = childFields(info.fieldNodes, info, "edges");
  const nodes = edges && childFields(edges, info, "node");
  const fields = nodes?.length ? childFields(nodes, info) : null;
  if (!fields) return null;
  const projectType = info.schema.getType("Project");
  if (!isObjectType(projectType)) return null;
  const defs = projectType.getFields();
  let deployments: SubtreePlan["deployments"] = null;
  const want = (name: string, page: PageRequest, filter: DeploymentChildFilter, take: number) => {
    if (deployments && deployments.name !== name) return false;
    deployments = { name, page, filter, take: Math.max(take, deployments?.take ?? 0) };
    return true;
  };
  try {
    for (const f of fields) {
      if (f.name.value === "latestDeployment") {
        const page = latestDeploymentPage(ctx);
        if (!want(deploymentsLoaderName(page, {}), page, {}, page.take)) return null;
      } else if (f.name.value === "deployments" && defs.deployments) {
        const args = getArgumentValues(defs.deployments, f, info.variableValues) as ProjectDeploymentsArgs;
        const { page, filter } = projectDeploymentsPage(ctx, args);
        if (!want(deploymentsLoaderName(page, filter), page, filter, page.take)) return null;
      }
    }
  } catch {
    // A bad argument: the resolver reports it.
    return null;
  }
  const count = fields.some((f) => f.name.value === "deploymentCount");
  return count || deployments ? { count, deployments, last: readsNothingElse(info) } : null;
}

/**
 * What the plan adds to a statement `WITH p AS (<the project page>) ... SELECT p.* ... FROM p`:
 * common table expressions (each with a leading comma) and SELECT columns
 * (with a leading comma). The deployment pages of all the page's projects
 * are one LATERAL CTE (`d`, the loaders' statement); their creators another
 * (`u`): each distinct creator is checked for visibility once
 * (`app_visible_user`, then RLS), not once per deployment row.
 */
export function subtreeSql(ctx: Context, plan: SubtreePlan | null): { with: Prisma.Sql; columns: Prisma.Sql } {
  if (!plan) return { with: Prisma.empty, columns: Prisma.empty };
  const columns: Prisma.Sql[] = [];
  const tenantId = ctx.tenant!.id;
  if (plan.count) {
    columns.push(Prisma.sql`(SELECT count(*)::int FROM deployments n WHERE n.tenant_id = ${tenantId}::uuid AND n.project_id = p.id) AS "deploymentCount"`);
  }
  const d = plan.deployments;
  if (!d) return { with: Prisma.empty, columns: Prisma.sql`, ${Prisma.join(columns, ", ")}` };
  const dir = Prisma.raw(d.page.orderBy[0]![d.page.sort.field] === "desc" ? "DESC" : "ASC");
  const rows = pageRowsSql(
    { table: "deployments", columns: DEPLOYMENT_ROW_COLUMNS, tenantId, page: { ...d.page, take: d.take }, filter: deploymentFilterSql(d.filter) },
    Prisma.raw("AND c.project_id = p.id"),
  );
  columns.push(
    Prisma.sql`(SELECT COALESCE(json_agg(y ORDER BY y."${Prisma.raw(d.page.sort.field)}" ${dir}, y.id ${dir}), '[]'::json)
       FROM (SELECT d.*, u.* FROM d LEFT JOIN u ON u."creatorId" = d."createdById" WHERE d."projectId" = p.id) y) AS "deploymentRows"`,
  );
  return {
    with: Prisma.sql`, d AS (SELECT x.* FROM p CROSS JOIN LATERAL (${rows}) x),
      u AS MATERIALIZED (SELECT ${DEPLOYMENT_CREATOR_COLUMNS} FROM users u
             WHERE u.id IN (SELECT "createdById" FROM d) AND ${visibleUser(ctx, Prisma.raw("u.id"))})`,
    columns: Prisma.sql`, ${Prisma.join(columns, ", ")}`,
  };
}

/** A timestamptz as json_agg prints it in a UTC session ("2026-11-24T16:00:00.12+00:00"; fraction trimmed, or none). */
const PG_UTC_TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,3}))?\+00:00$/;

/**
 * A timestamp of the JSON array, as the ISO string `toISOString` would give
 * for the Date the loaders' rows carry: the DateTime scalar answers it as
 * it is, cursors sign it as they sign a Date's (pagination.ts), so the
 * answer is byte-identical without a Date parsed per value and printed back
 * per value (three per deployment, ~300 per dashboard; docs/performance.md,
 * "Dates as strings"). Typed as the row's Date, which nothing of a
 * prefetched row reads as one. Anything else than PostgreSQL's UTC form (a
 * session in another time zone, a year past 9999, BC) is read as before: `new Date`.
 */
function date(v: unknown): Date {
  if (typeof v !== "string") return v as Date;
  const m = PG_UTC_TIMESTAMP.exec(v);
  if (!m) return new Date(v);
  return `${m[1]}.${m[2] === undefined ? "000" : m[2].padEnd(3, "0")}Z` as unknown as Date;
}

const CREATOR = Symbol("creator");

/** A deployment of the JSON array as the loaders' rows are (Dates, the creator's columns), its creator attached. */
function deploymentOf(r: DeploymentWithCreator): Deployment {
  r.createdAt = date(r.createdAt);
  r.updatedAt = date(r.updatedAt);
  r.creatorCreatedAt = date(r.creatorCreatedAt);
  (r as { [CREATOR]?: ReturnType<typeof creatorOf> })[CREATOR] = r.createdById ? creatorOf(r) : null;
  return r;
}

/** The creator read with a prefetched deployment (null: none or not visible); undefined when it was not prefetched. */
export function prefetchedCreator(d: Deployment): ReturnType<typeof creatorOf> | undefined {
  return (d as { [CREATOR]?: ReturnType<typeof creatorOf> })[CREATOR];
}

/** Moves the plan's columns of a project row into its prefetched subtree; the row becomes a plain Project. */
export function takeSubtree<P extends Project>(row: P & { deploymentCount?: number; deploymentRows?: unknown }, plan: SubtreePlan | null): P {
  if (!plan) return row;
  const { deploymentCount, deploymentRows, ...project } = row;
  const pre: Prefetched = {};
  if (plan.count) pre.count = deploymentCount ?? 0;
  if (plan.deployments) {
    const raw = typeof deploymentRows === "string" ? JSON.parse(deploymentRows) : deploymentRows;
    pre.deployments = { name: plan.deployments.name, take: plan.deployments.take, rows: (raw as DeploymentWithCreator[]).map(deploymentOf) };
  }
  (project as WithSubtree)[PREFETCHED] = pre;
  return project as unknown as P;
}

/** The project's prefetched deployment count, if its page read it. */
export const prefetchedCount = (p: Project): number | undefined => (p as WithSubtree)[PREFETCHED]?.count;

/** The project's first `take` deployments of the page kind `name`, if its page read at least as many. */
export function prefetchedDeployments(p: Project, name: string, take: number): Deployment[] | undefined {
  const d = (p as WithSubtree)[PREFETCHED]?.deployments;
  if (!d || d.name !== name || d.take < take) return undefined;
  return d.rows.length > take ? d.rows.slice(0, take) : d.rows;
}
