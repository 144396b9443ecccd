import { queryFromInfo } from "@pothos/plugin-prisma";
import { builder } from "../../graphql/builder.ts";
import { badInput } from "../../errors.ts";
import { payloadType } from "../../graphql/payload.ts";
import type { Prisma } from "../../generated/prisma/client.ts";
import { OrderDirectionEnum } from "../../graphql/enums.ts";
import { connectionType } from "../../graphql/connection.ts";
import { fromGlobalId, toGlobalId, uuidOrNone } from "../../graphql/ids.ts";
import { pageRequest, sortFrom } from "../../graphql/pagination.ts";
import { prefetchedCount, subtreePlan } from "../deployments/deployment.prefetch.ts";
import { deploymentCounts, projectPage, projectPageWithSubtree } from "./project.loaders.ts";
import * as service from "./project.service.ts";

export const ProjectRef = builder.prismaNode("Project", {
  id: { resolve: (p) => p.id },
  findUnique: (id, ctx) => ({ tenantId_id: { tenantId: ctx.tenant?.id ?? uuidOrNone(""), id: uuidOrNone(id) } }),
  nullable: true,
  fields: (t) => ({
    name: t.exposeString("name"),
    slug: t.exposeString("slug"),
    description: t.exposeString("description", { nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    updatedAt: t.expose("updatedAt", { type: "DateTime" }),
    deploymentCount: t.int({
      // Not async: the project page may have read it already (deployment.prefetch.ts).
      resolve: (p, _args, ctx) => prefetchedCount(p) ?? deploymentCounts(ctx).load(p.id),
    }),
  }),
});

export const ProjectConnection = connectionType(ProjectRef, "Project");

const ProjectFilter = builder.inputType("ProjectFilter", {
  fields: (t) => ({ search: t.string({ required: false }) }),
});

const ProjectOrderField = builder.enumType("ProjectOrderField", { values: ["CREATED_AT", "UPDATED_AT", "NAME"] as const });
export const ProjectOrder = builder.inputType("ProjectOrder", {
  fields: (t) => ({
    field: t.field({ type: ProjectOrderField, required: true }),
    direction: t.field({ type: OrderDirectionEnum, required: true }),
  }),
});

/** A Pothos selection that loads no relation with the rows (scalar fields only). */
function isPlainSelection(query: { include?: object; select?: object }): boolean {
  return Object.keys(query).every((k) => k === "include" || k === "select") && !Object.keys(query.include ?? {}).length && !query.select;
}

function projectWhere(filter: { search?: string | null } | null | undefined): Prisma.ProjectWhereInput {
  const trimmed = filter?.search?.trim();
  if (!trimmed) return {};
  if (trimmed.length > 100) throw badInput("filter.search", "filter.search must be at most 100 characters");
  // Prisma's `contains` is an ILIKE '%…%' that leaves % and _ as wildcards:
  // escape them so the search is plain text.
  const search = trimmed.replace(/[\\%_]/g, (c) => `\\${c}`);
  return {
    OR: [
      { name: { contains: search, mode: "insensitive" } },
      { slug: { contains: search, mode: "insensitive" } },
    ],
  };
}

builder.queryField("projects", (t) =>
  t.auth("VIEWER").field({
    type: ProjectConnection,
    args: {
      ...t.arg.connectionArgs(),
      filter: t.arg({ type: ProjectFilter }),
      orderBy: t.arg({ type: ProjectOrder }),
    },
    resolve: async (_root, args, ctx, info) => {
      const page = pageRequest(ctx.cursors, args, sortFrom(args.orderBy), "Project");
      const where = projectWhere(args.filter);
      const query = queryFromInfo({ context: ctx, info, path: ["edges", "node"], typeName: "Project" });
      // Without a search or Prisma relations to load, one statement reads the
      // page with the subtree its nodes select (deployment.prefetch.ts).
      const plan = Object.keys(where).length === 0 && isPlainSelection(query) ? subtreePlan(ctx, info) : null;
      if (plan) return projectPageWithSubtree(ctx, page, plan);
      return projectPage(ctx, page, where, query);
    },
  }),
);

const CreateProjectInput = builder.inputType("CreateProjectInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    slug: t.string(),
    description: t.string(),
  }),
});
const CreateProjectPayload = payloadType("CreateProjectPayload", { project: { type: ProjectRef } });

const UpdateProjectInput = builder.inputType("UpdateProjectInput", {
  fields: (t) => ({
    id: t.id({ required: true }),
    name: t.string(),
    description: t.string(),
  }),
});
const UpdateProjectPayload = payloadType("UpdateProjectPayload", { project: { type: ProjectRef } });

const DeleteProjectInput = builder.inputType("DeleteProjectInput", {
  fields: (t) => ({ id: t.id({ required: true }) }),
});
const DeleteProjectPayload = payloadType("DeleteProjectPayload", {
  deletedProjectId: { type: "ID" },
});

builder.mutationFields((t) => ({
  createProject: t.auth("DEVELOPER").field({
    type: CreateProjectPayload,
    directives: {
      quota: { resource: "PROJECTS", cost: 1 },
      audit: { action: "project.create" },
    },
    args: { input: t.arg({ type: CreateProjectInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      return { project: await service.createProject(ctx, input) };
    },
  }),
  updateProject: t.auth("DEVELOPER").field({
    type: UpdateProjectPayload,
    directives: { audit: { action: "project.update" } },
    args: { input: t.arg({ type: UpdateProjectInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = fromGlobalId("id", String(input.id), "Project");
      return { project: await service.updateProject(ctx, id, input) };
    },
  }),
  deleteProject: t.auth("ADMIN").field({
    type: DeleteProjectPayload,
    directives: { audit: { action: "project.delete" } },
    args: { input: t.arg({ type: DeleteProjectInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = fromGlobalId("id", String(input.id), "Project");
      await service.deleteProject(ctx, id);
      return { deletedProjectId: toGlobalId("Project", id) };
    },
  }),
}));
