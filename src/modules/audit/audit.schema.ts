import { queryFromInfo } from "@pothos/plugin-prisma";
import { builder } from "../../graphql/builder.ts";
import { badInput } from "../../errors.ts";
import type { Prisma } from "../../generated/prisma/client.ts";
import { ActorType } from "../../generated/prisma/enums.ts";
import { connectionType } from "../../graphql/connection.ts";
import { uuidOrNone } from "../../graphql/ids.ts";
import { DEFAULT_SORT, pageRequest } from "../../graphql/pagination.ts";
import { hasRole } from "../../policy/roles.ts";
import { asTenant, TenantRef } from "../tenants/tenant.schema.ts";
import { auditLogPage } from "./audit.loaders.ts";
import type { TenantInfo } from "../../tenancy/directory.ts";

export const ActorTypeEnum = builder.enumType(ActorType, { name: "ActorType" });

/**
 * The tenants of the platform log's entries, read by Platform.auditLog on
 * the cross-tenant path (a request's own `ctx.directory` answers only its
 * tenant and the caller's memberships).
 */
export const platformEntryTenants = new WeakMap<object, TenantInfo | null>();

/**
 * An audit entry. `actorId` and `targetId` are global ids; `tenant` is the
 * tenant the entry belongs to (read through the directory, so the same type
 * serves the tenant's own log and the platform's cross-tenant log).
 */
export const AuditLogEntryRef = builder.prismaNode("AuditLogEntry", {
  id: { resolve: (e) => e.id },
  // node(id): the audit log is for ADMINs (Query.auditLog says so with
  // @auth); below ADMIN an entry looks like one that does not exist. No
  // type-level @auth: the type is also served to platform admins, who hold
  // no tenant role, by the @crossTenant Platform.auditLog.
  findUnique: (id, ctx) => ({
    tenantId_id: {
      tenantId: ctx.tenant?.id ?? uuidOrNone(""),
      id: hasRole(ctx.role, "ADMIN") ? uuidOrNone(id) : uuidOrNone(""),
    },
  }),
  nullable: true,
  fields: (t) => ({
    action: t.exposeString("action"),
    actorType: t.expose("actorType", { type: ActorTypeEnum }),
    actorId: t.exposeString("actorId", { nullable: true }),
    actorLabel: t.exposeString("actorLabel", { nullable: true }),
    targetType: t.exposeString("targetType", { nullable: true }),
    targetId: t.exposeString("targetId", { nullable: true }),
    crossTenant: t.exposeBoolean("crossTenant"),
    tenant: t.field({
      type: TenantRef,
      nullable: true,
      // No `select`: the entry's scalars are always loaded, and a select
      // would make plugin-prisma reload the parent through findUnique, which
      // is tenant-scoped and so fails for the cross-tenant Platform.auditLog.
      resolve: async (e, _args, ctx) => {
        const tenant = platformEntryTenants.has(e) ? platformEntryTenants.get(e)! : e.tenantId ? await ctx.directory.tenant(e.tenantId) : null;
        return tenant && asTenant(tenant);
      },
    }),
    metadata: t.expose("metadata", { type: "JSON", nullable: true }),
    requestId: t.exposeString("requestId", { nullable: true }),
    ip: t.exposeString("ip", { nullable: true }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

export const AuditLogEntryConnection = connectionType(AuditLogEntryRef, "AuditLogEntry");

export const AuditLogFilter = builder.inputType("AuditLogFilter", {
  fields: (t) => ({
    action: t.string({ description: 'Exact action, e.g. "project.create".' }),
    actorId: t.id({ description: "Global id of the user or API key that acted." }),
    since: t.field({ type: "DateTime", description: "Entries created at or after this instant." }),
  }),
});

/** A filter string is bounded: a filter cannot become a large payload. */
function boundedText(field: string, value: string, max: number): string {
  if (value.length > max) throw badInput(field, `${field} must be at most ${max} characters`);
  return value;
}

export interface AuditLogFilterInput {
  action?: string | null;
  actorId?: string | number | null;
  since?: Date | null;
}

/**
 * The Prisma where of an AuditLogFilter (shared with Platform.auditLog).
 * Served by the (tenant_id, action, created_at, id) and (tenant_id,
 * created_at, id) indexes.
 */
export function auditLogWhere(filter: AuditLogFilterInput | null | undefined): Prisma.AuditLogEntryWhereInput {
  const where: Prisma.AuditLogEntryWhereInput = {};
  if (!filter) return where;
  if (filter.action != null) where.action = boundedText("filter.action", filter.action, 100);
  if (filter.actorId != null) where.actorId = boundedText("filter.actorId", String(filter.actorId), 200);
  if (filter.since != null) where.createdAt = { gte: filter.since };
  return where;
}

builder.queryField("auditLog", (t) =>
  t.auth("ADMIN").field({
    type: AuditLogEntryConnection,
    args: {
      ...t.arg.connectionArgs(),
      filter: t.arg({ type: AuditLogFilter }),
    },
    resolve: async (_root, args, ctx, info) => {
      const page = pageRequest(ctx.cursors, args, DEFAULT_SORT, "AuditLogEntry");
      const where = auditLogWhere(args.filter);
      const query = queryFromInfo({ context: ctx, info, path: ["edges", "node"], typeName: "AuditLogEntry" });
      return auditLogPage(ctx, page, where, query);
    },
  }),
);
