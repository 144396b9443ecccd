import type { GraphQLResolveInfo } from "graphql";
import type { Prisma } from "../generated/prisma/client.ts";
import type { Context } from "../tenancy/context.ts";
import type { ScopedTx } from "../tenancy/scoped-client.ts";
import { encodeGlobalID } from "@pothos/plugin-relay";
import { currentDirectiveScope } from "./enforcer.ts";
import { publishAfterCommit } from "../infra/live-events.ts";
import { isAuditAction, type AuditAction } from "../db/audit-actions.ts";

/**
 * Audit entries. A mutation writes its entry with the same transaction handle
 * as its change, so both land or neither does. Inside an `@audit` mutation
 * the enforcer (src/policy/enforcer.ts) supplies the declared action and the
 * input.
 */
const SECRET_KEYS = /secret|password|token|key$/i;

export function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === "object" && !(value instanceof Date)) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, SECRET_KEYS.test(k) ? "[redacted]" : redact(v)]),
    );
  }
  return value;
}

/**
 * What a platform entry records about the operation: its name, the field,
 * the field's effective arguments and the variables sent (SPEC section 6).
 * `args` are the resolver's arguments, already coerced, so they are the same
 * whether the client wrote them inline or passed them as variables (the
 * variables alone are `{}` for an inline call). Redacted when written, like
 * every metadata.
 */
export function operationMetadata(info: GraphQLResolveInfo, args: unknown) {
  return {
    operationName: info.operation.name?.value ?? null,
    field: `${info.parentType.name}.${info.fieldName}`,
    args,
    variables: info.variableValues,
  };
}

export interface AuditInput {
  /** Defaults to the field's @audit action. */
  action?: AuditAction;
  targetType?: string;
  targetId?: string;
  metadata?: unknown;
  crossTenant?: boolean;
}

export function actorFields(ctx: Context) {
  const actor = ctx.actor;
  return {
    actorType: actor?.type ?? ("SYSTEM" as const),
    actorId: actor ? encodeGlobalID(actor.type === "USER" ? "User" : "ApiKey", actor.id) : null,
    actorLabel: actor?.label ?? null,
  };
}

/** An audit entry's row, as written; `createdAt` is the app's time, as Prisma wrote it. */
export interface AuditRow {
  tenantId: string;
  action: AuditAction;
  actorType: "USER" | "API_KEY" | "SYSTEM";
  actorId: string | null;
  actorLabel: string | null;
  targetType: string | null;
  targetId: string | null;
  crossTenant: boolean;
  /** Redacted; undefined: none (NULL). */
  metadata: unknown;
  requestId: string;
  ip: string | null;
}

/**
 * The row of an entry, checked against the field's `@audit`: throws when
 * the action is not the declared one (thrown inside the transaction, the
 * change is rolled back with it). Written by `writeAudit`, or by a
 * service's own statement (src/policy/audit-sql.ts), which then calls
 * `noteAudited` once it has run.
 */
export function auditRow(ctx: Context, entry: AuditInput, tenantId?: string): AuditRow {
  const scope = currentDirectiveScope(ctx);
  const action = entry.action ?? scope?.action;
  if (!action) throw new Error("writeAudit: no action");
  if (!isAuditAction(action)) throw new Error(`writeAudit: "${action}" is not in AUDIT_ACTIONS (src/db/audit-actions.ts)`);
  if (scope?.action && action !== scope.action) {
    throw new Error(`${scope.field} is declared @audit(${scope.action}) but wrote "${action}"`);
  }
  // The mutation's effective input (coerced arguments: inline or variables
  // alike) is always part of the entry, beside what the service adds.
  const metadata = scope ? { ...(entry.metadata as object | undefined), input: scope.input } : entry.metadata;
  return {
    tenantId: tenantId ?? ctx.tenant!.id,
    action,
    ...actorFields(ctx),
    targetType: entry.targetType ?? null,
    targetId: entry.targetType && entry.targetId ? encodeGlobalID(entry.targetType, entry.targetId) : null,
    crossTenant: entry.crossTenant ?? false,
    metadata: redact(metadata) ?? undefined,
    requestId: ctx.requestId,
    ip: ctx.ip,
  };
}

/** Tells the enforcer the field's entry is written (it fails a mutation declared `@audit` that wrote none). */
export function noteAudited(ctx: Context, action: AuditAction): void {
  currentDirectiveScope(ctx)?.audited.push(action);
}

export async function writeAudit(tx: ScopedTx, ctx: Context, entry: AuditInput, tenantId?: string) {
  const row = auditRow(ctx, entry, tenantId);
  const created = await tx.auditLogEntry.create({
    data: { ...row, metadata: row.metadata as Prisma.InputJsonValue | undefined },
    select: { id: true },
  });
  publishAfterCommit(tx, row.tenantId, { type: "AuditLogEntry", id: created.id });
  noteAudited(ctx, row.action);
}
