import type pg from "pg";
import { isUuid } from "../../uuid.ts";
import type { LiveEvent, LiveNodeType } from "../../infra/live-events.ts";
import { ROUTE_SQL } from "../../db/placement-route.ts";
import { accessFactsSql, factsFrom, type AccessFacts, type Principal } from "./access.ts";

/**
 * The read of a tenant's pending live events (docs/live-updates.md): ONE
 * simple-protocol message, so one round-trip and no connection held while
 * the process is busy elsewhere. A read-only transaction of its own in the
 * tenant's scope: BEGIN, the RLS setting (wall 2), the access facts of every
 * subscriber (src/modules/live/access.ts), the nodes of each type and the projects they name, COMMIT.
 * Raw SQL passes by wall 1 (the Prisma scope), so every statement filters
 * tenant_id itself, as the per-parent loaders do. Every inlined value is a
 * checked UUID. The rows have the shape Prisma returns for these models
 * (camelCase fields, Dates, enums as strings, JSON parsed): the GraphQL
 * types resolve them like a query's (event-read.test.ts compares them).
 */


const NODE_SQL: Record<LiveNodeType, { table: string; columns: string }> = {
  Deployment: {
    table: "deployments",
    columns: `tenant_id AS "tenantId", id, project_id AS "projectId", status::text AS status, url, commit_sha AS "commitSha", branch,
      created_by_id AS "createdById", queued_at AS "queuedAt", ready_at AS "readyAt", created_at AS "createdAt", updated_at AS "updatedAt"`,
  },
  Workflow: {
    table: "workflows",
    columns: `tenant_id AS "tenantId", id, project_id AS "projectId", name, status::text AS status, config, created_at AS "createdAt", updated_at AS "updatedAt"`,
  },
  AuditLogEntry: {
    table: "audit_log",
    columns: `tenant_id AS "tenantId", id, action, actor_type::text AS "actorType", actor_id AS "actorId", actor_label AS "actorLabel",
      target_type AS "targetType", target_id AS "targetId", cross_tenant AS "crossTenant", metadata, request_id AS "requestId", ip,
      created_at AS "createdAt"`,
  },
};
const TYPES = Object.keys(NODE_SQL) as LiveNodeType[];
const PROJECT_COLUMNS = `tenant_id AS "tenantId", id, name, slug, description, created_at AS "createdAt", updated_at AS "updatedAt"`;

/** Node types whose rows carry their project (read with them, so `project { ... }` costs no read per subscriber). */
const WITH_PROJECT: LiveNodeType[] = ["Deployment", "Workflow"];

const uuids = (ids: Iterable<string>) => `'{${[...ids].join(",")}}'::uuid[]`;

export interface EventRead {
  facts: AccessFacts;
  /**
   * The placement the answering database's own tenants row names (`POOLED`,
   * `SCHEMA:<name>`, `DATABASE:<server>:<name>`; null: no such tenant there),
   * compared with the route the read was sent on (docs/placement.md).
   */
  route: string | null;
  /** By `${type}:${id}`; nodes of deployments and workflows carry `project`. */
  nodes: Map<string, { projectId?: unknown } & Record<string, unknown>>;
}

/** Where a tenant's events are read: the main database (`schema` null) or a placed tenant's schema there or database (the pool's). */
export interface EventSource {
  pool: pg.Pool;
  /** A SCHEMA placement's schema (checked by the caller: `tenant_<hex>`), set as the read's search_path alone. */
  schema: string | null;
}

const SCHEMA_NAME = /^tenant_[0-9a-f]{32}$/;

export function eventReadSql(
  tenantId: string,
  principals: Principal[],
  ids: Map<LiveNodeType, Set<string>>,
  schema: string | null = null,
  at: number = Date.now(),
): string {
  const all = [tenantId, ...[...ids.values()].flatMap((s) => [...s])];
  if (!all.every((v) => isUuid(v))) throw new Error("invalid live event read parameters");
  if (schema !== null && !SCHEMA_NAME.test(schema)) throw new Error("invalid live event read schema");
  const t = `'${tenantId}'::uuid`;
  const nodeIds = (type: LiveNodeType) => uuids(ids.get(type) ?? []);
  return [
    "BEGIN READ ONLY",
    `SELECT set_config('app.tenant_id', '${tenantId}', true), set_config('app.user_id', '', true), set_config('app.api_key_id', '', true), set_config('statement_timeout', '5000', true)${
      schema ? `, set_config('search_path', '"${schema}"', true)` : ""
    }`,
    // The access facts of every subscriber (its key judged by app_api_key_grant with its own secret), and the route.
    accessFactsSql(tenantId, principals, at, `,\n      ${ROUTE_SQL} AS route`),
    ...TYPES.map((type) => `SELECT ${NODE_SQL[type].columns} FROM ${NODE_SQL[type].table} WHERE tenant_id = ${t} AND id = ANY(${nodeIds(type)})`),
    `SELECT ${PROJECT_COLUMNS} FROM projects WHERE tenant_id = ${t} AND id IN (${WITH_PROJECT.map(
      (type) => `SELECT project_id FROM ${NODE_SQL[type].table} WHERE tenant_id = ${t} AND id = ANY(${nodeIds(type)})`,
    ).join(" UNION ")})`,
    "COMMIT",
  ].join(";\n");
}

/** The node ids the events name, by type (an id that is not a UUID names nothing). */
function idsOf(events: LiveEvent[]): Map<LiveNodeType, Set<string>> {
  const ids = new Map<LiveNodeType, Set<string>>();
  for (const e of events) {
    if (!("id" in e) || typeof e.id !== "string" || !isUuid(e.id)) continue;
    const set = ids.get(e.type) ?? new Set<string>();
    set.add(e.id);
    ids.set(e.type, set);
  }
  return ids;
}

/**
 * Reads the events' nodes, the subscribers' access facts and the route on a
 * connection of the source's pool (one round-trip); with no events, the
 * facts alone (a placed tenant's re-check).
 */
export async function readEvents(
  source: pg.Pool | EventSource,
  tenantId: string,
  principals: Principal[],
  events: LiveEvent[],
  /** The hub's clock, ms epoch: credentials are judged at the later of it and PostgreSQL's time. */
  at: number = Date.now(),
): Promise<EventRead> {
  const { pool, schema } = "pool" in source ? source : { pool: source, schema: null };
  const sql = eventReadSql(tenantId, principals, idsOf(events), schema, at);
  const connection = await pool.connect();
  let results: pg.QueryResult[];
  try {
    results = (await connection.query(sql)) as unknown as pg.QueryResult[];
    connection.release();
  } catch (err) {
    // A failed statement leaves the rest of the message unrun and the transaction open: discard the connection.
    connection.release(err as Error);
    throw err;
  }
  const facts = factsFrom(results[2]!.rows);
  const projects = new Map(results[2 + TYPES.length + 1]!.rows.map((p) => [p.id as string, p]));
  const nodes: EventRead["nodes"] = new Map();
  TYPES.forEach((type, i) => {
    for (const row of results[3 + i]!.rows) {
      if (WITH_PROJECT.includes(type)) row.project = row.projectId ? (projects.get(row.projectId) ?? null) : null;
      nodes.set(`${type}:${row.id}`, row);
    }
  });
  return { facts, nodes, route: (results[2]!.rows[0]?.route as string | undefined) ?? null };
}
