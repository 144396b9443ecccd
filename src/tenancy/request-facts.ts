import type pg from "pg";
import { POOLED } from "../db/placement-admin.ts";
import { moveFenceSql } from "../db/placement-fence.ts";
import { ROUTE_SQL, routeOf } from "../db/placement-route.ts";
import { connectFor } from "../db/tier-pool.ts";
import type { Plan, QuotaResource, Role, TenantStatus } from "../generated/prisma/enums.ts";
import { serviceUnavailable } from "../errors.ts";
import { isUuid } from "../uuid.ts";
import { openSql, type TransactionSettings } from "./transaction-settings.ts";

/**
 * The authorization facts (docs/revocation.md): with `authorization` set,
 * the message that opens the request transaction also runs
 * `app_request_facts(...)`, so PostgreSQL reports the caller's membership,
 * role, key validity, tenant status, plan, limits and platform-admin flag
 * in the same round-trip. In statement mode they take one message of their
 * own: BEGIN, the settings, the facts, COMMIT.
 */

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** What PostgreSQL says about the caller, in the request's transaction (see the migration of app_request_facts). */
export interface RequestFacts {
  /** The tenant named by app.tenant_id; null: it does not exist (any more). */
  tenant: {
    status: TenantStatus;
    plan: Plan;
    overrides: Partial<Record<QuotaResource, number | null>>;
    /** The feature override (a JSON array); null: the plan's. */
    features: unknown;
    domain: string | null;
    idp: { issuer: string; jwksUrl: string; audience: string | null } | null;
    storageBytes: number;
  } | null;
  /** app.user_id's membership in it; null: none. */
  member: { id: string; role: Role } | null;
  /** users.is_platform_admin of app.user_id; null: no such user. */
  admin: boolean | null;
  /** The role of the API key when its secret is valid now; null otherwise. */
  key: Role | null;
  /**
   * The tenant's response-cache generation and TTL override (app_request_cache,
   * read beside the facts when the request may use the response cache;
   * docs/response-cache.md).
   */
  cache?: { generation: string; ttl: number | null };
  /**
   * Where the tenant's rows are, as the tenants row of the database that
   * answered says (`POOLED`, `SCHEMA:<name>`, `DATABASE:<name>`; null: no
   * row). A request routed by a stale directory entry sees another route
   * than its own (docs/placement.md, "Moving a tenant").
   */
  route?: string | null;
  /** Mutations: false while a move of the tenant holds its write fence (src/db/placement-fence.ts). */
  writable?: boolean;
}

/**
 * The facts statement, sent after the settings (a statement of its own, so
 * it runs after set_config whatever the planner does); undefined without
 * `authorization`. Inlined values: checked to be a UUID and a SHA-256 hex digest.
 */
export function factsSql(settings: TransactionSettings): string | undefined {
  const auth = settings.authorization;
  if (!auth) return undefined;
  const { apiKeyId } = settings;
  const { apiKeyHash } = auth;
  if ((apiKeyId && !isUuid(apiKeyId)) || (apiKeyHash && !SHA256_HEX.test(apiKeyHash))) {
    throw new Error("invalid authorization parameters");
  }
  const literal = (v: string | null | undefined) => (v ? `'${v}'` : "NULL");
  const cache = auth.cache ? ", app_request_cache() AS cache" : "";
  // The route PostgreSQL confirms, and for a mutation the shared side of
  // the move fence (held to its COMMIT; refused, not waited for, while a
  // move holds or waits for the exclusive side).
  const tenant = `'${settings.tenantId}'`;
  const route = `, (SELECT ${ROUTE_SQL} FROM tenants WHERE id = ${tenant}::uuid) AS route`;
  const fence = settings.mode === "mutation" ? `, pg_try_advisory_xact_lock_shared(${moveFenceSql(`${tenant}::text`)}) AS writable` : "";
  return `SELECT app_request_facts(${literal(apiKeyId)}, ${literal(apiKeyHash)}) AS facts${cache}${route}${fence}`;
}

/**
 * The transaction-local flag the facts statement of a planned read's one
 * message sets (`gatedFacts`): 'on' only when PostgreSQL's facts admit
 * the candidate the statement was planned for. The planned statement runs
 * its work only under it (src/graphql/sql-plan-compile.ts `gated`). Set by
 * that statement alone, with `set_config(..., true)`: it ends with the
 * transaction, and nothing a client sends reaches SQL text (values are
 * bound parameters), so no client can set it.
 */
export const PLAN_GATE = "app.planned_read_admitted";

/** Who a planned read was planned for: the caller and tenant plan the directory cache proposes. */
export interface PlannedFor {
  plan: Plan;
  role: Role;
  /** The candidate's membership (a user), or null for an API key (`apiKey`). */
  membershipId: string | null;
  apiKey: boolean;
}

/** A statement and its bound values. */
export interface BoundStatement {
  text: string;
  values: (string | null)[];
}

/**
 * The facts statement of a planned read's one message (docs/request-path.md,
 * "One message for a planned read"): `factsSql`'s facts and route, and the
 * gate: PLAN_GATE 'on' only when the tenant exists, is ACTIVE, has the
 * candidate's plan (the message runs under that plan's statement timeout),
 * its row names the route the message was sent to, and the caller is the
 * candidate's member with its role, or its API key valid with its role.
 * Conservative: whatever else `confirmAuthorization` refuses on (a domain,
 * a provider, a feature, the rate-limit recheck) or corrects is still
 * decided there; the gate only keeps a caller it would refuse on these, or
 * plan differently for, from running the statement. Off, it also makes
 * the statement give up a lock it would wait for (`lock_timeout` 1 ms:
 * parsing the statement locks its tables, whether it runs or not).
 * Every value is a bound parameter (nothing to check before inlining), so
 * the text is one of four (key or member, with or without the cache
 * generation) and is prepared once per connection (docs/request-path.md,
 * "Prepared statements"). Undefined where it does not apply (no
 * authorization, not a request transaction, no caller to gate on: then no
 * one message).
 */
export function gatedFacts(settings: TransactionSettings, candidate: PlannedFor): BoundStatement | undefined {
  const auth = settings.authorization;
  const { plan, role, membershipId, apiKey } = candidate;
  if (!auth || settings.mode !== "request" || (!apiKey && !membershipId)) return undefined;
  const cache = auth.cache ? ", app_request_cache() AS cache" : "";
  const caller = apiKey ? `f.facts->>'key' = $6::text` : `f.facts->'member'->>'id' = $7::text AND f.facts->'member'->>'role' = $6::text`;
  const admits = `CASE WHEN f.facts->'tenant'->>'status' = 'ACTIVE' AND f.facts->'tenant'->>'plan' = $4::text AND f.route = $5::text AND ${caller} THEN 'on' ELSE 'off' END`;
  // The facts in a subquery of their own (OFFSET 0: evaluated once, not
  // inlined into each expression that reads them).
  const facts = `SELECT app_request_facts($1::uuid, $2::text) AS facts${cache}, (SELECT ${ROUTE_SQL} FROM tenants WHERE id = $3::uuid) AS route`;
  const text = `SELECT f.*, set_config('${PLAN_GATE}', g.admits, true) AS gate, set_config('lock_timeout', CASE g.admits WHEN 'on' THEN current_setting('lock_timeout') ELSE '1ms' END, true) AS lock_timeout FROM (${facts} OFFSET 0) f, LATERAL (SELECT ${admits} AS admits) g`;
  const values = [settings.apiKeyId || null, auth.apiKeyHash || null, settings.tenantId, plan, routeOf(settings.placement ?? POOLED), role];
  return { text, values: apiKey ? values : [...values, membershipId] };
}

/** Whether the facts row of the opening message (`gatedFacts`) set PLAN_GATE 'on'. */
export function gateOf(results: Pick<pg.QueryResult, "rows">[]): boolean {
  return results[results.length - 1]?.rows[0]?.gate === "on";
}

/** The facts row of the last result of the opening message. */
export function factsOf(results: Pick<pg.QueryResult, "rows">[]): RequestFacts {
  const row = results[results.length - 1]?.rows[0];
  const facts = row?.facts as RequestFacts | undefined;
  if (!facts) throw new Error("app_request_facts returned nothing");
  if (row.cache) facts.cache = row.cache;
  if ("route" in row) facts.route = row.route as string | null;
  if ("writable" in row) facts.writable = row.writable as boolean;
  return facts;
}

/** Statement mode: the facts in one message of their own (BEGIN, the settings, the facts, COMMIT). */
export async function factsInOneMessage(pool: pg.Pool, settings: TransactionSettings, facts: string): Promise<RequestFacts> {
  const connection = await connectFor(pool, settings.tenantId, settings.signal);
  try {
    const results = (await connection.query(`${openSql(settings)}; ${facts}; COMMIT`)) as unknown as pg.QueryResult[];
    connection.release();
    return factsOf(results.slice(0, -1));
  } catch (err) {
    // A failed statement leaves the rest of the message unrun (and the
    // transaction open): the connection is discarded, not reused.
    connection.release(err as Error);
    throw err;
  }
}

/**
 * What of the facts admits a request: the caller (membership, role,
 * platform admin, key), the tenant's status, plan, limit and feature
 * overrides, domain and provider, its route and the move fence. Not the
 * cache generation (a later one only makes an answer stored under the
 * earlier key fresher than its key), nor the tenant's measured storage,
 * which the storage refresher rewrites while the tenant writes and which
 * refuses nothing a read does (a mutation's storage check uses the facts
 * of its one transaction). Review PM-1: comparing it refused a read
 * (SERVICE_UNAVAILABLE) when only a new measurement came in between.
 */
function admission(f: RequestFacts) {
  const t = f.tenant;
  const tenant = t && { status: t.status, plan: t.plan, overrides: t.overrides, features: t.features, domain: t.domain, idp: t.idp };
  return { tenant, member: f.member, admin: f.admin, key: f.key, route: f.route, writable: f.writable };
}

/** Whether two readings of the facts admit the same request (`admission`). */
export function sameAdmission(a: RequestFacts, b: RequestFacts): boolean {
  return JSON.stringify(admission(a)) === JSON.stringify(admission(b));
}

/**
 * The facts changed between the request's transactions (a membership, key,
 * role, plan or status change committed in between): refused, retryable;
 * the retry is authorized afresh.
 */
export const admissionChanged = () => serviceUnavailable("authorization", 1);
