import { Prisma } from "../generated/prisma/client.ts";
import type { AuditRow } from "./audit.ts";

/**
 * An audit entry written by the statement of the change it records
 * (docs/live-updates.md, "The cost of a write"): a data-modifying CTE that
 * inserts the entry once per row of `changed` (another CTE of the same
 * statement: the rows inserted or updated), so the entry exists exactly
 * when the change does, in the same statement and transaction. With no
 * row changed (an unknown or foreign id) it inserts nothing.
 *
 * Raw SQL bypasses the Prisma tenant scope: the row names its tenant
 * (`row.tenantId`, the request's), and RLS checks it on insert
 * (`tenant_append`). `id` is made by the caller (what the live event
 * names); `at` is the entry's created_at (the app's clock, as Prisma wrote it).
 */
export function auditInsertSql(row: AuditRow, id: string, at: Date, changed: Prisma.Sql): Prisma.Sql {
  const metadata = row.metadata === undefined ? null : JSON.stringify(row.metadata);
  return Prisma.sql`INSERT INTO audit_log (tenant_id, id, action, actor_type, actor_id, actor_label, target_type, target_id,
                         cross_tenant, metadata, request_id, ip, created_at)
    SELECT ${row.tenantId}::uuid, ${id}::uuid, ${row.action}, ${row.actorType}::"ActorType", ${row.actorId}, ${row.actorLabel},
           ${row.targetType}, ${row.targetId}, ${row.crossTenant}, ${metadata}::jsonb, ${row.requestId}, ${row.ip}, ${at}::timestamptz
    FROM ${changed}`;
}
