import { queryFromInfo } from "@pothos/plugin-prisma";
import type { FieldNode, GraphQLResolveInfo } from "graphql";
import { builder } from "../../graphql/builder.ts";
import type { AuditLogEntry, Deployment, Workflow } from "../../generated/prisma/client.ts";
import type { Role } from "../../generated/prisma/enums.ts";
import { StreamEnd, type StreamSpec } from "./stream.ts";
import { Delivery } from "./delivery.ts";
import { policyOf } from "../../policy/field-policy.ts";
import { fromGlobalId, uuidOrNone } from "../../graphql/ids.ts";
import type { Context } from "../../tenancy/context.ts";
import { AuditLogEntryRef } from "../audit/audit.schema.ts";
import { DeploymentRef } from "../deployments/deployment.schema.ts";
import { WorkflowRef } from "../workflows/workflow.schema.ts";

/**
 * Subscriptions (SPEC section 10), served over SSE and graphql-ws
 * (docs/live-updates.md). Each event is the node re-read through the
 * subscriber's tenant-scoped handle; the field's @auth is checked when the
 * stream opens and again, against PostgreSQL, for every event and whenever
 * the tenant's access facts change.
 */
/** The @auth role of the subscription field being resolved. */
function requiredRole(info: GraphQLResolveInfo): Role {
  const field = info.parentType.getFields()[info.fieldName];
  return policyOf(field?.extensions?.directives).auth ?? "VIEWER";
}

/** A project filter argument: a well-formed id of another type or tenant matches nothing. */
function projectFilter(projectId: string | null | undefined): string | null {
  if (projectId == null) return null;
  try {
    return fromGlobalId("projectId", projectId, "Project");
  } catch (err) {
    if ((err as { code?: string }).code === "BAD_USER_INPUT") throw err;
    return uuidOrNone("");
  }
}

function open(ctx: Context, info: GraphQLResolveInfo, spec: Omit<StreamSpec, "requires">) {
  const open = ctx.live?.open;
  if (!open) throw new Error("live updates are not configured");
  const transport = ctx as unknown as { res?: { destroy(): void }; socket?: { terminate(): void } };
  const stream: StreamSpec = { ...spec, requires: requiredRole(info) };
  return open(stream, { res: transport.res, socket: transport.socket });
}

/** The nodes a stream carries, by type name. */
interface LiveNodes {
  Deployment: Deployment;
  Workflow: Workflow;
  AuditLogEntry: AuditLogEntry;
}

/** The subscription field node each stream's context has planned (one per stream: its own context). */
const planned = new WeakMap<Context, FieldNode>();

/**
 * Plans the subscriber's selection on its first event only. The plan is a
 * function of the schema and the stream's document and variables, which do
 * not change during the stream (no select or query callback of these types
 * reads the context); Pothos keeps the mappings it records on the context
 * (per context object, by response path), and a stream's context is the
 * same object for every event, so the later events resolve `project` from
 * the node with the first event's mappings. Planning on every event was
 * 7% of the live load's main-thread time (docs/live-updates.md, "Fifth round").
 */
function planOnce(ctx: Context, info: GraphQLResolveInfo, typeName: keyof LiveNodes) {
  const field = info.fieldNodes[0]!;
  if (planned.get(ctx) === field) return;
  queryFromInfo({ context: ctx, info, typeName });
  planned.set(ctx, field);
}

/**
 * The node of an event, or the error that ends the stream (a coded `next`,
 * then `complete`). The node was read once for every stream of its tenant
 * with its to-one relations (src/modules/live/hub.ts); planning the
 * subscriber's selection here (Pothos's queryFromInfo, which reads nothing)
 * records that plan for this result, so a relation already on the node
 * (`project`) resolves from it instead of a read per subscriber. A field the
 * node does not carry still loads on its own (Pothos checks each).
 */
function emit<T extends keyof LiveNodes>(payload: unknown, ctx: Context, info: GraphQLResolveInfo, typeName: T): LiveNodes[T] {
  if (payload instanceof StreamEnd) throw payload.error;
  planOnce(ctx, info, typeName);
  // The hub read the node as a row of `typeName` (src/modules/live/event-read.ts); this execution's own copy.
  return (payload instanceof Delivery ? payload.copy() : payload) as LiveNodes[T];
}

builder.subscriptionField("deploymentUpdated", (t) =>
  t.auth("VIEWER").field({
    type: DeploymentRef,
    description: "New deployments and status changes of the caller's tenant, optionally of one project.",
    args: { projectId: t.arg.id() },
    subscribe: (_root, args, ctx, info) => {
      const projectId = projectFilter(args.projectId as string | null | undefined);
      return open(ctx, info, {
        type: "Deployment",
        projectId,
      });
    },
    resolve: (payload, _args, ctx, info) => emit(payload, ctx, info, "Deployment"),
  }),
);

builder.subscriptionField("workflowUpdated", (t) =>
  t.auth("VIEWER").field({
    type: WorkflowRef,
    description: "New workflows and changes to workflows of the caller's tenant, optionally of one project.",
    args: { projectId: t.arg.id() },
    subscribe: (_root, args, ctx, info) => {
      const projectId = projectFilter(args.projectId as string | null | undefined);
      return open(ctx, info, {
        type: "Workflow",
        projectId,
      });
    },
    resolve: (payload, _args, ctx, info) => emit(payload, ctx, info, "Workflow"),
  }),
);

builder.subscriptionField("auditLogAppended", (t) =>
  t.auth("ADMIN").field({
    type: AuditLogEntryRef,
    description: "Entries appended to the tenant's audit log (ADMIN).",
    subscribe: (_root, _args, ctx, info) =>
      open(ctx, info, {
        type: "AuditLogEntry",
        projectId: null,
      }),
    resolve: (payload, _args, ctx, info) => emit(payload, ctx, info, "AuditLogEntry"),
  }),
);
