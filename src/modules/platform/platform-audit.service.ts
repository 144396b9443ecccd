import { Prisma, type AuditLogEntry } from "../../generated/prisma/client.ts";
import type { ActorType } from "../../generated/prisma/enums.ts";
import { badInput } from "../../errors.ts";
import type { PageRequest } from "../../graphql/pagination.ts";
import type { PlatformTx } from "../../policy/platform.ts";
import { NIL_UUID } from "../../uuid.ts";
import { placedAuditBranch, type PlacedAudit } from "./placement-analytics.ts";

/** An entry of either log, as the AuditLogEntry type reads it. */
export type AuditRow = AuditLogEntry;

export interface AuditFilter {
  action?: string | null;
  actorId?: string | number | null;
  since?: Date | null;
}

/**
 * The platform's audit trail: every platform operation (platform_audit_log,
 * `crossTenant: true`; `tenant` set when it named exactly one tenant) merged
 * with every tenant's own entries (audit_log rows with cross_tenant = false;
 * the cross_tenant copies made for access transparency are left out, their
 * original is the platform entry). Newest first, keyset on (created_at, id).
 */
function auditUnion(filter: AuditFilter | null | undefined, placed: Prisma.Sql = Prisma.empty): Prisma.Sql {
  const conditions: Prisma.Sql[] = [];
  if (filter?.action != null) {
    if (filter.action.length > 100) throw badInput("filter.action", "filter.action must be at most 100 characters");
    conditions.push(Prisma.sql`e.action = ${filter.action}`);
  }
  if (filter?.actorId != null) {
    const actorId = String(filter.actorId);
    if (actorId.length > 200) throw badInput("filter.actorId", "filter.actorId must be at most 200 characters");
    conditions.push(Prisma.sql`e.actor_id = ${actorId}`);
  }
  if (filter?.since != null) conditions.push(Prisma.sql`e.created_at >= ${filter.since}`);
  const where = conditions.length ? Prisma.sql`WHERE ${Prisma.join(conditions, " AND ")}` : Prisma.empty;
  return Prisma.sql`(
    SELECT * FROM (
      SELECT a.id, a.tenant_id, a.action, a.actor_type::text AS actor_type, a.actor_id, a.actor_label,
        a.target_type, a.target_id, a.cross_tenant, a.metadata, a.request_id, a.ip, a.created_at
      FROM audit_log a WHERE NOT a.cross_tenant
      UNION ALL
      SELECT pa.id, CASE WHEN cardinality(pa.tenant_ids) = 1 THEN pa.tenant_ids[1] END, pa.action,
        pa.actor_type::text, pa.actor_id, pa.actor_label, NULL, NULL, true, pa.metadata, pa.request_id, pa.ip, pa.created_at
      FROM platform_audit_log pa
      ${placed}
    ) e ${where}
  )`;
}

export async function auditLog(
  tx: PlatformTx,
  page: PageRequest,
  filter: AuditFilter | null | undefined,
  withCount: boolean,
  /** The placed tenants' own entries past the keysets, and their count (placement-analytics.ts). */
  placed?: PlacedAudit,
): Promise<{ rows: AuditRow[]; total: number | null }> {
  const union = auditUnion(filter, placed ? placedAuditBranch(placed) : Prisma.empty);
  const desc = page.orderBy[0]?.createdAt === "desc";
  const cuts = page.keysets.map(
    (k) => Prisma.sql`(u.created_at, u.id) ${Prisma.raw(k.op)} (${new Date(k.value)}::timestamptz, ${k.id}::uuid)`,
  );
  const dir = Prisma.raw(desc ? "DESC" : "ASC");
  const raw = await tx.$queryRaw<Record<string, unknown>[]>(Prisma.sql`
    SELECT u.* FROM ${union} u
    ${cuts.length ? Prisma.sql`WHERE ${Prisma.join(cuts, " AND ")}` : Prisma.empty}
    ORDER BY u.created_at ${dir}, u.id ${dir}
    LIMIT ${page.take}`);
  const rows = raw.map((r) => ({
    id: r.id as string,
    // No single tenant: the nil UUID, which AuditLogEntry.tenant (a directory lookup) resolves to null.
    tenantId: (r.tenant_id as string | null) ?? NIL_UUID,
    action: r.action as string,
    actorType: r.actor_type as ActorType,
    actorId: r.actor_id as string | null,
    actorLabel: r.actor_label as string | null,
    targetType: r.target_type as string | null,
    targetId: r.target_id as string | null,
    crossTenant: r.cross_tenant as boolean,
    metadata: r.metadata as Prisma.JsonValue,
    requestId: r.request_id as string | null,
    ip: r.ip as string | null,
    createdAt: r.created_at as Date,
  }));
  let total: number | null = null;
  if (withCount) {
    const [c] = await tx.$queryRaw<{ n: number }[]>(Prisma.sql`SELECT count(*)::int AS n FROM ${auditUnion(filter)} u`);
    total = (c?.n ?? 0) + (placed?.count ?? 0);
  }
  return { rows, total };
}
