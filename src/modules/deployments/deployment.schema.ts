import { queryFromInfo } from "@pothos/plugin-prisma";
import type { GraphQLResolveInfo } from "graphql";
import { builder } from "../../graphql/builder.ts";
import { payloadType } from "../../graphql/payload.ts";
import type { Prisma } from "../../generated/prisma/client.ts";
import type { DeploymentStatus } from "../../generated/prisma/enums.ts";
import { connectionType } from "../../graphql/connection.ts";
import { DeploymentStatusEnum, OrderDirectionEnum } from "../../graphql/enums.ts";
import { fromGlobalId, uuidOrNone } from "../../graphql/ids.ts";
import { perSelection } from "../../graphql/loaders.ts";
import { pageRequest, sortFrom, toConnection } from "../../graphql/pagination.ts";
import type { Context } from "../../tenancy/context.ts";
import { userLoader } from "../users/user.loaders.ts";
import { UserRef } from "../users/user.schema.ts";
import { deploymentCountsByProject, deploymentPage, deploymentsLoaderName, deploymentsOfProjects } from "./deployment.loaders.ts";
import { latestDeploymentPage, prefetchedCreator, prefetchedDeployments, projectDeploymentsPage, type ProjectDeploymentsArgs } from "./deployment.prefetch.ts";
import * as service from "./deployment.service.ts";

export const DeploymentRef = builder.prismaNode("Deployment", {
  id: { resolve: (d) => d.id },
  findUnique: (id, ctx) => ({ tenantId_id: { tenantId: ctx.tenant?.id ?? uuidOrNone(""), id: uuidOrNone(id) } }),
  nullable: true,
  fields: (t) => ({
    project: t.relation("project"),
    status: t.expose("status", { type: DeploymentStatusEnum }),
    url: t.exposeString("url", { nullable: true }),
    commitSha: t.exposeString("commitSha", { nullable: true }),
    branch: t.exposeString("branch", { nullable: true }),
    // Through the users loader rather than t.relation: rows loaded by raw
    // SQL (per-project pages) carry createdById, not the relation.
    createdBy: t.field({
      type: UserRef,
      nullable: true,
      // A deployment read with its project page carries its creator already
      // (null when the tenant may not see them: no second look through the loader).
      resolve: (d, _args, ctx) => {
        if (!d.createdById) return null;
        const pre = prefetchedCreator(d);
        return pre === undefined ? userLoader(ctx).load(d.createdById) : pre;
      },
    }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    updatedAt: t.expose("updatedAt", { type: "DateTime" }),
  }),
});

export const DeploymentConnection = connectionType(DeploymentRef, "Deployment");

const DeploymentFilter = builder.inputType("DeploymentFilter", {
  fields: (t) => ({
    status: t.field({ type: [DeploymentStatusEnum] }),
    projectId: t.id(),
    createdAfter: t.field({ type: "DateTime" }),
    createdBefore: t.field({ type: "DateTime" }),
  }),
});

const DeploymentOrderField = builder.enumType("DeploymentOrderField", { values: ["CREATED_AT", "UPDATED_AT"] as const });
const DeploymentOrder = builder.inputType("DeploymentOrder", {
  fields: (t) => ({
    field: t.field({ type: DeploymentOrderField, required: true }),
    direction: t.field({ type: OrderDirectionEnum, required: true }),
  }),
});

interface DeploymentFilterInput {
  status?: DeploymentStatus[] | null;
  projectId?: string | number | null;
  createdAfter?: Date | null;
  createdBefore?: Date | null;
}

function deploymentWhere(filter: DeploymentFilterInput | null | undefined): Prisma.DeploymentWhereInput {
  const where: Prisma.DeploymentWhereInput = {};
  if (!filter) return where;
  if (filter.status?.length) where.status = { in: filter.status };
  if (filter.projectId != null) {
    // A project id of another tenant (or of another type) matches nothing.
    try {
      where.projectId = fromGlobalId("filter.projectId", String(filter.projectId), "Project");
    } catch (err) {
      if ((err as { code?: string }).code === "BAD_USER_INPUT") throw err;
      where.projectId = uuidOrNone("");
    }
  }
  if (filter.createdAfter || filter.createdBefore) {
    where.createdAt = {
      ...(filter.createdAfter ? { gt: filter.createdAfter } : {}),
      ...(filter.createdBefore ? { lt: filter.createdBefore } : {}),
    };
  }
  return where;
}

const nodeQuery = (ctx: Context, info: GraphQLResolveInfo) =>
  queryFromInfo({ context: ctx, info, path: ["edges", "node"], typeName: "Deployment" });

builder.queryField("deployments", (t) =>
  t.auth("VIEWER").field({
    type: DeploymentConnection,
    args: {
      ...t.arg.connectionArgs(),
      filter: t.arg({ type: DeploymentFilter }),
      orderBy: t.arg({ type: DeploymentOrder }),
    },
    resolve: async (_root, args, ctx, info) => {
      const page = pageRequest(ctx.cursors, args, sortFrom(args.orderBy), "Deployment");
      const where = deploymentWhere(args.filter);
      return deploymentPage(ctx, page, where, nodeQuery(ctx, info));
    },
  }),
);

builder.prismaObjectFields("Project", (t) => ({
  deployments: t.field({
    type: DeploymentConnection,
    args: {
      ...t.arg.connectionArgs(),
      filter: t.arg({ type: DeploymentFilter }),
      orderBy: t.arg({ type: DeploymentOrder }),
    },
    // Not async: rows the project page read already (deployment.prefetch.ts) answer at once.
    resolve: (project, args, ctx, info) => {
      const { page, name, rows, totals } = perSelection(info, () => {
        const { page, filter } = projectDeploymentsPage(ctx, args as ProjectDeploymentsArgs);
        const where = deploymentWhere(filter);
        return { page, name: deploymentsLoaderName(page, filter), rows: deploymentsOfProjects(ctx, page, filter), totals: () => deploymentCountsByProject(ctx, where) };
      });
      const total = () => totals().load(project.id);
      const found = prefetchedDeployments(project, name, page.take);
      if (found) return toConnection(found, page, total);
      return rows.load({ parentId: project.id, take: page.take }).then((r) => toConnection(r, page, total));
    },
  }),
  latestDeployment: t.field({
    type: DeploymentRef,
    nullable: true,
    resolve: (project, _args, ctx, info) => {
      const { name, latest } = perSelection(info, () => {
        const page = latestDeploymentPage(ctx);
        return { name: deploymentsLoaderName(page, {}), latest: deploymentsOfProjects(ctx, page, {}) };
      });
      const found = prefetchedDeployments(project, name, 1);
      if (found) return found[0] ?? null;
      return latest.load({ parentId: project.id, take: 1 }).then((rows) => rows[0] ?? null);
    },
  }),
}));

const CreateDeploymentInput = builder.inputType("CreateDeploymentInput", {
  fields: (t) => ({
    projectId: t.id({ required: true }),
    commitSha: t.string(),
    branch: t.string(),
  }),
});
const CreateDeploymentPayload = payloadType("CreateDeploymentPayload", { deployment: { type: DeploymentRef } });

builder.mutationField("createDeployment", (t) =>
  t.auth("DEVELOPER").field({
    type: CreateDeploymentPayload,
    directives: {
      quota: { resource: "DEPLOYMENTS_PER_HOUR", cost: 1 },
      audit: { action: "deployment.create" },
    },
    args: { input: t.arg({ type: CreateDeploymentInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const projectId = fromGlobalId("projectId", String(input.projectId), "Project");
      return { deployment: await service.createDeployment(ctx, projectId, input) };
    },
  }),
);

const UpdateDeploymentStatusInput = builder.inputType("UpdateDeploymentStatusInput", {
  fields: (t) => ({
    id: t.id({ required: true }),
    status: t.field({ type: DeploymentStatusEnum, required: true }),
    url: t.string(),
  }),
});
const UpdateDeploymentStatusPayload = payloadType("UpdateDeploymentStatusPayload", { deployment: { type: DeploymentRef } });

builder.mutationField("updateDeploymentStatus", (t) =>
  t.auth("DEVELOPER").field({
    type: UpdateDeploymentStatusPayload,
    directives: { audit: { action: "deployment.updateStatus" } },
    args: { input: t.arg({ type: UpdateDeploymentStatusInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = fromGlobalId("id", String(input.id), "Deployment");
      return { deployment: await service.updateDeploymentStatus(ctx, id, input) };
    },
  }),
);
