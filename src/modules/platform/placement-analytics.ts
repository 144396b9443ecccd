import { Prisma } from "../../generated/prisma/client.ts";
import { placementOf, type PlacementRef } from "../../db/placement-admin.ts";
import { pgQuery, type Query } from "../../db/placement-rows.ts";
import type { PlatformPlacements, PlatformTx } from "../../policy/platform.ts";

/**
 * Platform analytics across placements (docs/placement.md, "Analytics"): the
 * main database's statement covers POOLED tenants and every tenant's
 * directory rows (members, request counters); a SCHEMA or DATABASE tenant's
 * projects, workflows, deployments and own audit entries are read in its
 * placement first (a few at a time) and handed to that one statement as a
 * JSON parameter, so sorting, keysets and totals stay one query. Fail closed:
 * a placement that cannot be read fails the whole answer (and its audit
 * entry with it); nothing partial is returned.
 */

const FAN_OUT = 4;

interface PlacedTenant {
  id: string;
  ref: PlacementRef;
}

async function placedTenants(tx: PlatformTx): Promise<PlacedTenant[]> {
  const rows = await tx.tenant.findMany({
    where: { placement: { not: "POOLED" } },
    select: { id: true, placement: true, placementServer: true, placementName: true },
  });
  return rows.map((r) => ({ id: r.id, ref: placementOf(r) }));
}

/** `fn` on an owner connection of each placed tenant's placement, FAN_OUT at a time; `prefix` names its schema. */
async function fanOut<T>(placements: PlatformPlacements, tenants: PlacedTenant[], fn: (q: Query, prefix: string, t: PlacedTenant) => Promise<T>): Promise<T[]> {
  const admin = placements().admin;
  const out: T[] = [];
  for (let i = 0; i < tenants.length; i += FAN_OUT) {
    out.push(
      ...(await Promise.all(
        tenants.slice(i, i + FAN_OUT).map(async (t) => {
          const client = await admin.ownerClient(t.ref);
          try {
            const prefix = t.ref.placement === "SCHEMA" ? `"${t.ref.name}".` : "";
            const result = await fn(pgQuery(client), prefix, t);
            client.release();
            return result;
          } catch (err) {
            client.release(err as Error);
            throw err;
          }
        }),
      )),
    );
  }
  return out;
}

export interface PlacedCounts {
  /** Rows for jsonb_to_recordset: tenant_id, projects, workflows, deployments, by_status. */
  json: string;
  /** The placed tenants (their main-database counters leave their placement's rows out). */
  ids: string[];
  projects: number;
  workflows: number;
  deployments: number;
}

/** No placed tenants: the main database's statement alone. */
export const NO_PLACED_COUNTS: PlacedCounts = { json: "[]", ids: [], projects: 0, workflows: 0, deployments: 0 };

/**
 * The placed tenants' projects, workflows and deployments, from the counters
 * of their placements (tenant_stats: one primary-key read each); with a
 * range, their deployments created in it are counted there.
 */
export async function placedCounts(placements: PlatformPlacements, tx: PlatformTx, range: { from?: Date | null; to?: Date | null }): Promise<PlacedCounts> {
  const ranged = range.from != null || range.to != null;
  const rows = await fanOut(placements, await placedTenants(tx), async (q, s, t) => {
    const [r] = await q<{ projects: number | null; workflows: number | null; by_status: Record<string, number> | null }>(
      `SELECT st.projects, st.workflows,
              ${
                ranged
                  ? `(SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*)::int AS n FROM ${s}deployments
                        WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at < $3)
                        GROUP BY status) x)`
                  : `jsonb_build_object('QUEUED', st.deployments_queued, 'BUILDING', st.deployments_building, 'READY', st.deployments_ready,
                        'ERROR', st.deployments_error, 'CANCELED', st.deployments_canceled)`
              } AS by_status
         FROM ${s}tenant_stats st WHERE st.tenant_id = $1`,
      ranged ? [t.id, range.from ?? null, range.to ?? null] : [t.id],
    );
    // No counters row: the placement is not this tenant's (renamed away, half made): fail closed.
    if (!r) throw new Error(`the placement of tenant ${t.id} has no counters for it`);
    const byStatus = r.by_status ?? {};
    const deployments = Object.values(byStatus).reduce((a, b) => a + Number(b), 0);
    return { tenant_id: t.id, projects: r.projects ?? 0, workflows: r.workflows ?? 0, deployments, by_status: r.by_status ?? null };
  });
  const sum = (k: "projects" | "workflows" | "deployments") => rows.reduce((a, r) => a + r[k], 0);
  return { json: JSON.stringify(rows), ids: rows.map((r) => r.tenant_id), projects: sum("projects"), workflows: sum("workflows"), deployments: sum("deployments") };
}

/** The CTE of placed counts, for the tenantUsage statement. */
export const placedCte = (placed: PlacedCounts) =>
  Prisma.sql`placed AS (SELECT * FROM jsonb_to_recordset(${placed.json}::jsonb)
    AS x(tenant_id uuid, projects int, workflows int, deployments int, by_status jsonb))`;

export interface PlacedAudit {
  /** Rows shaped like the audit union's, for jsonb_to_recordset. */
  json: string;
  count: number;
}

/**
 * The placed tenants' own audit entries (not the cross-tenant copies) that
 * pass the filter and the keysets: at most `take` of each, newest or oldest
 * first like the page, and how many pass the filter.
 */
export async function placedAudit(
  placements: PlatformPlacements,
  tx: PlatformTx,
  filter: { action?: string | null; actorId?: string | number | null; since?: Date | null } | null | undefined,
  keysets: { op: string; value: string; id: string }[],
  desc: boolean,
  take: number,
  withCount: boolean,
): Promise<PlacedAudit> {
  const parts = await fanOut(placements, await placedTenants(tx), async (q, s, t) => {
    const params: unknown[] = [t.id, filter?.action ?? null, filter?.actorId == null ? null : String(filter.actorId), filter?.since ?? null];
    const where = `a.tenant_id = $1 AND NOT a.cross_tenant AND ($2::text IS NULL OR a.action = $2) AND ($3::text IS NULL OR a.actor_id = $3)
      AND ($4::timestamptz IS NULL OR a.created_at >= $4)`;
    const cuts = keysets
      .filter((k) => k.op === "<" || k.op === ">")
      .map((k) => {
        params.push(new Date(k.value), k.id);
        return ` AND (a.created_at, a.id) ${k.op} ($${params.length - 1}::timestamptz, $${params.length}::uuid)`;
      })
      .join("");
    const dir = desc ? "DESC" : "ASC";
    const rows = await q<Record<string, unknown>>(
      `SELECT a.id, a.tenant_id, a.action, a.actor_type::text AS actor_type, a.actor_id, a.actor_label, a.target_type, a.target_id,
              a.cross_tenant, a.metadata, a.request_id, a.ip, a.created_at
         FROM ${s}audit_log a WHERE ${where}${cuts} ORDER BY a.created_at ${dir}, a.id ${dir} LIMIT ${Math.max(0, Math.trunc(take))}`,
      params,
    );
    const count = withCount ? Number((await q<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}audit_log a WHERE ${where}`, params.slice(0, 4)))[0]?.n ?? 0) : 0;
    return { rows, count };
  });
  return { json: JSON.stringify(parts.flatMap((p) => p.rows)), count: parts.reduce((a, p) => a + p.count, 0) };
}

/** The placed entries as a branch of the audit union. */
export const placedAuditBranch = (placed: PlacedAudit) =>
  Prisma.sql`UNION ALL
      SELECT x.id, x.tenant_id, x.action, x.actor_type, x.actor_id, x.actor_label, x.target_type, x.target_id, x.cross_tenant,
        x.metadata, x.request_id, x.ip, x.created_at
      FROM jsonb_to_recordset(${placed.json}::jsonb) AS x(id uuid, tenant_id uuid, action text, actor_type text, actor_id text,
        actor_label text, target_type text, target_id text, cross_tenant boolean, metadata jsonb, request_id text, ip text, created_at timestamptz)`;
