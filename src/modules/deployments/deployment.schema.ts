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
import { DEFAULT_SORT, pageRequest, toConnection, type ConnectionArgs } from "../../graphql/pagination.ts";
import type { Context } from "../../tenancy/context.ts";
import { sortFrom } from "../projects/project.schema.ts";
import { userLoader } from "../users/user.loaders.ts";
import { UserRef } from "../users/user.schema.ts";
import { deploymentCountsByProject, deploymentPage, deploymentsOfProjects } from "./deployment.loaders.ts";
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
      resolve: (d, _args, ctx) => (d.createdById ? userLoader(ctx).load(d.createdById) : null) as never,
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
    resolve: async (project, args, ctx, info) => {
      const { page, rows, totals } = perSelection(info, () => {
        const page = pageRequest(ctx.cursors, args as ConnectionArgs, sortFrom(args.orderBy), "Deployment");
        // projectId is implied by the parent; the rest of the filter applies.
        const filter: DeploymentFilterInput = {
          status: args.filter?.status ?? null,
          createdAfter: args.filter?.createdAfter ?? null,
          createdBefore: args.filter?.createdBefore ?? null,
        };
        const where = deploymentWhere(filter);
        return { page, rows: deploymentsOfProjects(ctx, page, filter), totals: () => deploymentCountsByProject(ctx, where) };
      });
      const found = await rows.load({ parentId: project.id, take: page.take });
      return toConnection(found, page, () => totals().load(project.id));
    },
  }),
  latestDeployment: t.field({
    type: DeploymentRef,
    nullable: true,
    resolve: async (project, _args, ctx, info) => {
      const latest = perSelection(info, () => deploymentsOfProjects(ctx, pageRequest(ctx.cursors, { first: 1 }, DEFAULT_SORT, "Deployment"), {}));
      const rows = await latest.load({ parentId: project.id, take: 1 });
      return rows[0] ?? null;
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
