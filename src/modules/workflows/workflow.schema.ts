import { queryFromInfo } from "@pothos/plugin-prisma";
import type { GraphQLResolveInfo } from "graphql";
import { builder } from "../../graphql/builder.ts";
import type { Prisma } from "../../generated/prisma/client.ts";
import type { WorkflowStatus } from "../../generated/prisma/enums.ts";
import { connectionType } from "../../graphql/connection.ts";
import { WorkflowStatusEnum } from "../../graphql/enums.ts";
import { fromGlobalId, toGlobalId, uuidOrNone } from "../../graphql/ids.ts";
import { DEFAULT_SORT, pageRequest, toConnection, type ConnectionArgs } from "../../graphql/pagination.ts";
import { payloadType } from "../../graphql/payload.ts";
import type { Context } from "../../tenancy/context.ts";
// Project must exist before Workflow.project and Project.workflows refer to it.
import "../projects/project.schema.ts";
import { workflowCountsByProject, workflowPage, workflowsOfProjects } from "./workflow.loaders.ts";
import * as service from "./workflow.service.ts";

export const WorkflowRef = builder.prismaNode("Workflow", {
  id: { resolve: (w) => w.id },
  findUnique: (id, ctx) => ({ tenantId_id: { tenantId: ctx.tenant?.id ?? uuidOrNone(""), id: uuidOrNone(id) } }),
  nullable: true,
  fields: (t) => ({
    name: t.exposeString("name"),
    status: t.expose("status", { type: WorkflowStatusEnum }),
    config: t.expose("config", { type: "JSON", nullable: true }),
    project: t.relation("project", { nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    updatedAt: t.expose("updatedAt", { type: "DateTime" }),
  }),
});

export const WorkflowConnection = connectionType(WorkflowRef, "Workflow");

const WorkflowFilter = builder.inputType("WorkflowFilter", {
  fields: (t) => ({ status: t.field({ type: WorkflowStatusEnum }) }),
});

function workflowWhere(filter: { status?: WorkflowStatus | null } | null | undefined): Prisma.WorkflowWhereInput {
  return filter?.status ? { status: filter.status } : {};
}

const nodeQuery = (ctx: Context, info: GraphQLResolveInfo) =>
  queryFromInfo({ context: ctx, info, path: ["edges", "node"], typeName: "Workflow" });

builder.queryField("workflows", (t) =>
  t.auth("VIEWER").field({
    type: WorkflowConnection,
    args: {
      ...t.arg.connectionArgs(),
      filter: t.arg({ type: WorkflowFilter }),
    },
    resolve: async (_root, args, ctx, info) => {
      // Served by the (tenant_id, created_at, id) and (tenant_id, status, created_at, id) indexes.
      const page = pageRequest(ctx.cursors, args, DEFAULT_SORT, "Workflow");
      const where = workflowWhere(args.filter);
      return workflowPage(ctx, page, where, nodeQuery(ctx, info));
    },
  }),
);

builder.prismaObjectFields("Project", (t) => ({
  workflows: t.field({
    type: WorkflowConnection,
    args: t.arg.connectionArgs(),
    resolve: async (project, args, ctx) => {
      const page = pageRequest(ctx.cursors, args as ConnectionArgs, DEFAULT_SORT, "Workflow");
      const rows = await workflowsOfProjects(ctx, page).load({ parentId: project.id, take: page.take });
      return toConnection(rows, page, () => workflowCountsByProject(ctx).load(project.id));
    },
  }),
}));

const CreateWorkflowInput = builder.inputType("CreateWorkflowInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    projectId: t.id(),
    config: t.field({ type: "JSON" }),
  }),
});
const CreateWorkflowPayload = payloadType("CreateWorkflowPayload", { workflow: { type: WorkflowRef } });

const UpdateWorkflowInput = builder.inputType("UpdateWorkflowInput", {
  fields: (t) => ({
    id: t.id({ required: true }),
    name: t.string(),
    status: t.field({ type: WorkflowStatusEnum }),
    config: t.field({ type: "JSON" }),
  }),
});
const UpdateWorkflowPayload = payloadType("UpdateWorkflowPayload", { workflow: { type: WorkflowRef } });

const DeleteWorkflowInput = builder.inputType("DeleteWorkflowInput", {
  fields: (t) => ({ id: t.id({ required: true }) }),
});
const DeleteWorkflowPayload = payloadType("DeleteWorkflowPayload", {
  deletedWorkflowId: { type: "ID" },
});

builder.mutationFields((t) => ({
  createWorkflow: t.auth("DEVELOPER").field({
    type: CreateWorkflowPayload,
    directives: {
      quota: { resource: "WORKFLOWS_PER_HOUR", cost: 1 },
      audit: { action: "workflow.create" },
    },
    args: { input: t.arg({ type: CreateWorkflowInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const projectId = input.projectId != null ? fromGlobalId("projectId", String(input.projectId), "Project") : null;
      return { workflow: await service.createWorkflow(ctx, { ...input, projectId }) };
    },
  }),
  updateWorkflow: t.auth("DEVELOPER").field({
    type: UpdateWorkflowPayload,
    directives: { audit: { action: "workflow.update" } },
    args: { input: t.arg({ type: UpdateWorkflowInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = fromGlobalId("id", String(input.id), "Workflow");
      return { workflow: await service.updateWorkflow(ctx, id, input) };
    },
  }),
  deleteWorkflow: t.auth("ADMIN").field({
    type: DeleteWorkflowPayload,
    directives: { audit: { action: "workflow.delete" } },
    args: { input: t.arg({ type: DeleteWorkflowInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = fromGlobalId("id", String(input.id), "Workflow");
      await service.deleteWorkflow(ctx, id);
      return { deletedWorkflowId: toGlobalId("Workflow", id) };
    },
  }),
}));
