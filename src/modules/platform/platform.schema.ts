import type { GraphQLResolveInfo, SelectionSetNode } from "graphql";
import type { DeploymentStatus, Plan, TenantStatus } from "../../generated/prisma/enums.ts";
import { builder } from "../../graphql/builder.ts";
import { DeploymentStatusEnum, OrderDirectionEnum, PlanEnum, TenantStatusEnum } from "../../graphql/enums.ts";
import { connectionType } from "../../graphql/connection.ts";
import { DEFAULT_SORT, pageRequest, toConnection } from "../../graphql/pagination.ts";
import { operationMetadata } from "../../policy/audit.ts";
import { crossTenant, platformDirectory } from "../../policy/platform.ts";
import type { Context } from "../../tenancy/context.ts";
import { AuditLogEntryConnection, AuditLogFilter, platformEntryTenants } from "../audit/audit.schema.ts";
import { asTenant, TenantRef } from "../tenants/tenant.schema.ts";
import { auditLog } from "./platform-audit.service.ts";
import { totals, type PlatformTotals } from "./platform-totals.service.ts";
import { tenantPage, tenantWhere } from "./tenant-list.service.ts";
import { tenantUsage, type TenantUsageStats } from "./tenant-usage.service.ts";
import { placedAudit, placedCounts } from "./placement-analytics.ts";

/**
 * `Query.platform`: the operators' cross-tenant view. Only platform admins
 * get a Platform (anyone else: FORBIDDEN and `platform: null`); every field
 * below is @crossTenant itself (admitted on its own: the path of
 * `platform` ends when it returns) and runs on the platform client inside crossTenant(), which writes the
 * audit entry (actor, operation name, arguments, tenants touched,
 * crossTenant) in the same transaction as the read, before anything is
 * returned: if the entry cannot be written, the field fails and, the fields
 * being non-null, `platform` is null.
 */

interface PlatformRoot {
  readonly platform: true;
}

export const PlatformRef = builder.objectRef<PlatformRoot>("Platform");

export const StatusCountRef = builder.objectRef<{ status: DeploymentStatus; count: number }>("StatusCount").implement({
  fields: (t) => ({
    status: t.field({ type: DeploymentStatusEnum, resolve: (c) => c.status }),
    count: t.exposeInt("count"),
  }),
});
const PlanCountRef = builder.objectRef<{ plan: Plan; count: number }>("PlanCount").implement({
  fields: (t) => ({
    plan: t.field({ type: PlanEnum, resolve: (c) => c.plan }),
    count: t.exposeInt("count"),
  }),
});
const TenantStatusCountRef = builder.objectRef<{ status: TenantStatus; count: number }>("TenantStatusCount").implement({
  fields: (t) => ({
    status: t.field({ type: TenantStatusEnum, resolve: (c) => c.status }),
    count: t.exposeInt("count"),
  }),
});

export const TenantUsageStatsRef = builder.objectRef<TenantUsageStats>("TenantUsageStats").implement({
  description:
    "One tenant's usage. members, projects, workflows (and, without from/to, deployments) are exact counters, updated in the transaction of each change: no lag. apiRequests without from/to is the tenant's total as of the request counter's last flush (every few seconds). With from/to, deployments and apiRequests count the activity within the range (apiRequests by whole hours).",
  fields: (t) => ({
    // A plain row from the platform path: never re-read through the tenant-scoped client.
    tenant: t.field({ type: TenantRef, resolve: (s) => asTenant(s.tenant) }),
    members: t.exposeInt("members"),
    projects: t.exposeInt("projects"),
    deployments: t.exposeInt("deployments"),
    deploymentsByStatus: t.field({ type: [StatusCountRef], resolve: (s) => s.deploymentsByStatus }),
    workflows: t.exposeInt("workflows"),
    apiRequests: t.exposeInt("apiRequests"),
    storageBytes: t.float({
      description: "Bytes of the tenant's rows (pg_column_size), as last measured in the background (every few minutes).",
      resolve: (s) => s.tenant.storageBytes ?? 0,
    }),
  }),
});
const TenantUsageStatsConnection = connectionType(TenantUsageStatsRef, "TenantUsageStats");
const TenantConnection = connectionType(TenantRef, "Tenant");

const PlatformTotalsRef = builder.objectRef<PlatformTotals>("PlatformTotals").implement({
  fields: (t) => ({
    tenants: t.exposeInt("tenants"),
    tenantsByPlan: t.field({ type: [PlanCountRef], resolve: (p) => p.tenantsByPlan }),
    tenantsByStatus: t.field({ type: [TenantStatusCountRef], resolve: (p) => p.tenantsByStatus }),
    members: t.exposeInt("members"),
    projects: t.exposeInt("projects"),
    deployments: t.exposeInt("deployments"),
    apiRequests: t.exposeInt("apiRequests"),
  }),
});

const TenantFilter = builder.inputType("TenantFilter", {
  fields: (t) => ({
    status: t.field({ type: TenantStatusEnum }),
    plan: t.field({ type: PlanEnum }),
    search: t.string({ description: "Part of the name or slug (case-insensitive)." }),
  }),
});

const TenantUsageOrderField = builder.enumType("TenantUsageOrderField", {
  values: ["CREATED_AT", "MEMBERS", "PROJECTS", "DEPLOYMENTS", "WORKFLOWS", "API_REQUESTS"] as const,
});
const TenantUsageOrder = builder.inputType("TenantUsageOrder", {
  fields: (t) => ({
    field: t.field({ type: TenantUsageOrderField, required: true }),
    direction: t.field({ type: OrderDirectionEnum, required: true }),
  }),
});

/** Whether the field's selection asks for `name` (directly or through fragments). */
function selects(info: GraphQLResolveInfo, name: string): boolean {
  const visit = (set: SelectionSetNode | undefined): boolean =>
    !!set?.selections.some((s) => {
      if (s.kind === "Field") return s.name.value === name;
      if (s.kind === "InlineFragment") return visit(s.selectionSet);
      return visit(info.fragments[s.name.value]?.selectionSet);
    });
  return info.fieldNodes.some((n) => visit(n.selectionSet));
}

builder.queryField("platform", (t) =>
  t.field({
    type: PlatformRef,
    nullable: true,
    description: "Cross-tenant operations: platform admins only, every access audited.",
    directives: { crossTenant: {} },
    resolve: () => ({ platform: true }) as const,
  }),
);

const audited = <T>(ctx: Context, info: GraphQLResolveInfo, args: unknown, fn: Parameters<typeof crossTenant<T>>[2], touched?: (r: T) => string[]) =>
  crossTenant<T>(ctx, { action: `platform.${info.fieldName}`, metadata: operationMetadata(info, args), touched }, fn);

PlatformRef.implement({
  fields: (t) => ({
    tenants: t.field({
      // Admitted on its own: the path of Query.platform ended when it returned.
      directives: { crossTenant: {} },
      type: TenantConnection,
      args: { ...t.arg.connectionArgs(), filter: t.arg({ type: TenantFilter }) },
      resolve: (_root, args, ctx, info) => {
        const page = pageRequest(ctx.cursors, args, DEFAULT_SORT, "Tenant");
        const where = tenantWhere(args.filter);
        const withCount = selects(info, "totalCount");
        return audited(
          ctx,
          info,
          args,
          (tx) => tenantPage(tx, page, where, withCount),
          (c) => c.edges.map((e) => e.node.id),
        );
      },
    }),
    tenantUsage: t.field({
      // Admitted on its own: the path of Query.platform ended when it returned.
      directives: { crossTenant: {} },
      type: TenantUsageStatsConnection,
      description:
        "Per-tenant usage, one page, sorted by orderBy (default CREATED_AT DESC). Without from/to it reads the tenants' counters (exact, kept in the transaction of every change, no lag; apiRequests as of the request counter's last flush): its cost follows the page, not the data. With from/to, deployments and apiRequests are counted from the rows in the range for every tenant, so its cost follows the rows in the range.",
      args: {
        first: t.arg.int(),
        after: t.arg.string(),
        orderBy: t.arg({ type: TenantUsageOrder }),
        from: t.arg({ type: "DateTime" }),
        to: t.arg({ type: "DateTime" }),
      },
      resolve: (_root, args, ctx, info) =>
        audited(
          ctx,
          info,
          args,
          async (tx, placements) => tenantUsage(tx, ctx.cursors, args, await placedCounts(placements, tx, args)),
          (c) => c.edges.map((e) => e.node.tenant.id),
        ),
    }),
    totals: t.field({
      // Admitted on its own: the path of Query.platform ended when it returned.
      directives: { crossTenant: {} },
      type: PlatformTotalsRef,
      description:
        "Platform-wide totals: sums of the tenants' counters (exact, no lag; apiRequests as of the request counter's last flush; the cost follows the number of tenants, not their rows). With from/to, deployments and apiRequests are counted from the rows in the range (apiRequests by whole hours).",
      args: { from: t.arg({ type: "DateTime" }), to: t.arg({ type: "DateTime" }) },
      resolve: (_root, args, ctx, info) => audited(ctx, info, args, async (tx, placements) => totals(tx, args, await placedCounts(placements, tx, args))),
    }),
    auditLog: t.field({
      // Admitted on its own: the path of Query.platform ended when it returned.
      directives: { crossTenant: {} },
      type: AuditLogEntryConnection,
      args: { ...t.arg.connectionArgs(), filter: t.arg({ type: AuditLogFilter }) },
      resolve: (_root, args, ctx, info) => {
        const page = pageRequest(ctx.cursors, args, DEFAULT_SORT, "PlatformAuditLog");
        const withCount = selects(info, "totalCount");
        return audited(ctx, info, args, async (tx, placements) => {
          const desc = page.orderBy[0]?.createdAt === "desc";
          const placed = await placedAudit(placements, tx, args.filter, page.keysets, desc, page.take, withCount);
          const { rows, total } = await auditLog(tx, page, args.filter, withCount, placed);
          const directory = platformDirectory(ctx);
          for (const r of rows) platformEntryTenants.set(r, r.tenantId ? await directory.tenant(r.tenantId) : null);
          return toConnection(rows, page, () => Promise.resolve(total ?? 0));
        });
      },
    }),
  }),
});
