import { isDeepStrictEqual } from "node:util";
import { locatedError, type ExecutionArgs, type ExecutionResult, type GraphQLSchema } from "graphql";
import type { Plugin } from "graphql-yoga";
import { gated, planQuery, type PlannedQuery } from "../graphql/sql-plan-compile.ts";
import { sqlPlans, type PlanContext } from "../graphql/sql-plan.ts";
import { deploymentSqlPlans } from "../modules/deployments/deployment.sql-plan.ts";
import { projectSqlPlans } from "../modules/projects/project.sql-plan.ts";
import { userSqlPlans } from "../modules/users/user.sql-plan.ts";
import type { Context } from "../tenancy/context.ts";
import type { PlannedFor } from "../tenancy/request-facts.ts";
import { deferredAuthorization, type DeferredAuthorization } from "./use-request-transaction.ts";

/** The execute function a plugin is handed (graphql-jit's, wrapped by the deferred authorization). */
type ExecuteFn = (args: ExecutionArgs) => unknown;

/**
 * SQL-planned queries (docs/sql-plans.md): a query operation whose every
 * selected field is declared by its module (`*.sql-plan.ts`) and admitted
 * for this caller is answered by one statement that builds the response's
 * JSON text in PostgreSQL, sent with the read transaction's COMMIT; no
 * Prisma call, no resolver, no JSON.stringify. Anything else is executed as
 * before (sql-plan-compile.ts says what falls back).
 *
 * It sits between the request's transaction and the response cache. When
 * the cache looks the query up, the authorization facts were read before
 * (ctx.role PostgreSQL's); otherwise it plans for the cached caller and
 * sends the facts with the planned statement, one message (`planFirst`).
 * It replaces the execute
 * function, which the cache wraps, so a HIT never reaches it and a MISS is
 * stored from its result exactly as from execution's (the cache's
 * `__typename` fields are planned like any other).
 */

const PLANS = sqlPlans(projectSqlPlans, deploymentSqlPlans, userSqlPlans);

export interface SqlPlanOptions {
  /** SQL_PLANS (config.ts). @default true */
  enabled: boolean;
  schema: GraphQLSchema;
}

export function useSqlPlans(options: SqlPlanOptions): Plugin<Context> {
  if (!options.enabled) return {};
  return {
    onExecute({ args, executeFn, setExecuteFn }) {
      const ctx = args.contextValue as Context;
      if (ctx.operation !== "query" || !ctx.tenant) return;
      setExecuteFn((exec: ExecutionArgs) => {
        const authorization = deferredAuthorization(ctx);
        if (authorization) return planFirst(options.schema, ctx, authorization, exec, executeFn);
        // Authorized before execution (the response cache looks it up): planned for PostgreSQL's caller.
        const planned = plan(options.schema, ctx, exec);
        return planned ? answer(ctx, planned) : executeFn(exec);
      });
    },
  };
}

const plan = (schema: GraphQLSchema, ctx: Context, exec: ExecutionArgs) =>
  planQuery(schema, PLANS, ctx as PlanContext, exec.document, exec.operationName, exec.variableValues);

/**
 * One message for a planned read (docs/request-path.md): planned for the
 * caller the directory cache proposes, sent with the transaction's opening
 * and the authorization facts (TenantDb `readWithFacts`), then the facts are
 * confirmed exactly as before execution (`authorization.confirm`,
 * src/tenancy/authorize.ts: its errors are the answer). The statement is
 * gated in PostgreSQL: it does no work unless the facts in its message
 * admit the candidate (tenant ACTIVE, its plan, route, member or key and
 * role: request-facts.ts `gatedFacts`), so a caller the cache still
 * holds but PostgreSQL refuses runs nothing of it (no load, no lock wait,
 * no timing of the tenant's query). The JS check stays the authority: a
 * gated-off message whose facts pass is answered as a changed caller is.
 * The body is the answer only when the caller PostgreSQL confirmed plans
 * the same statement under the same plan (its statement timeout);
 * otherwise it is dropped and the query is planned again (or executed) for
 * the confirmed caller, in a transaction of its own whose facts must equal
 * the confirmed ones.
 */
async function planFirst(schema: GraphQLSchema, ctx: Context, authorization: DeferredAuthorization, exec: ExecutionArgs, executeFn: ExecuteFn) {
  const candidate = planInputs(ctx);
  const candidatePlan = ctx.tenant!.plan;
  const planned = plan(schema, ctx, exec);
  const gate = plannedFor(ctx);
  const message = planned && gate && ctx.tenantDb.readWithFacts<{ body: string | null }>(gated(planned), gate);
  // Once the facts are confirmed: the plan for the confirmed caller, answered in a transaction of its own (or executed).
  const forConfirmed = (same: boolean) => {
    const confirmed = same ? planned : plan(schema, ctx, exec);
    return confirmed ? answer(ctx, confirmed) : executeFn(exec);
  };
  if (!message) {
    // Not planned for the candidate (or no candidate to gate on): the facts first, as before execution.
    await authorization.confirm();
    return forConfirmed(planInputs(ctx) === candidate);
  }
  await authorization.confirm(message.then((m) => m.facts));
  const read = await message;
  const same = planInputs(ctx) === candidate;
  // Confirmed, though the gate (more conservative) was off: nothing of the
  // statement ran (a failure is its lock given up). Planned for the
  // confirmed caller in a transaction of its own, as a changed caller is.
  if (!read.admitted) return forConfirmed(same);
  if (!same) {
    // The caller or the tenant changed: the body stands only for the same
    // statement under the same plan (the message ran under the candidate
    // plan's statement timeout; authorize set the confirmed one's since).
    const again = plan(schema, ctx, exec);
    if (!again || candidatePlan !== ctx.tenant!.plan || !sameSql(again.sql, planned.sql)) return again ? answer(ctx, again) : executeFn(exec);
  }
  return "rows" in read ? bodyResult(planned, read.rows[0]?.body) : failedRoot(planned, read.failure);
}

/** The candidate the statement is planned for, as the gate compares it (null: none to gate on, the facts first). */
function plannedFor(ctx: Context): PlannedFor | null {
  if (!ctx.role || (!ctx.apiKey && !ctx.membershipId)) return null;
  return { plan: ctx.tenant!.plan, role: ctx.role, membershipId: ctx.apiKey ? null : ctx.membershipId, apiKey: !!ctx.apiKey };
}

/**
 * What a plan may depend on that confirming the facts can change: the
 * caller (role, membership, key, platform-admin flag) and the tenant's
 * admission facts (plan, status, features, limits, domain, provider). Not
 * the measured storage (no read is refused by it; request-facts.ts
 * `admission`). Equal: the confirmed caller plans the very same statement.
 */
function planInputs(ctx: Context): string {
  const t = ctx.tenant!;
  const limits = Object.entries(t.limits).sort(([a], [b]) => (a < b ? -1 : 1));
  return JSON.stringify([
    ctx.role,
    ctx.membershipId,
    ctx.isPlatformAdmin,
    ctx.user?.id ?? null,
    ctx.user?.isPlatformAdmin ?? null,
    ctx.apiKey?.id ?? null,
    ctx.apiKey?.role ?? null,
    t.id,
    t.plan,
    t.status,
    [...(t.features ?? [])].sort(),
    limits,
    t.domain ?? null,
    t.idp ? [t.idp.issuer, t.idp.jwksUrl, t.idp.audience ?? null] : null,
  ]);
}

const sameSql = (a: PlannedQuery["sql"], b: PlannedQuery["sql"]) => a.text === b.text && isDeepStrictEqual(a.values, b.values);

async function answer(ctx: Context, planned: PlannedQuery): Promise<ExecutionResult> {
  let body: string | null | undefined;
  try {
    // The operation's only statement: it carries the read transaction's COMMIT.
    body = (await ctx.tenantDb.queryRaw<{ body: string | null }>(planned.sql, { last: true }))[0]?.body;
  } catch (err) {
    return failedRoot(planned, err);
  }
  return bodyResult(planned, body);
}

/** As execution reports a failed root field (every planned root field is non-null: no data). */
function failedRoot(planned: PlannedQuery, err: unknown): ExecutionResult {
  const root = planned.roots[0]!;
  return { data: null, errors: [locatedError(err, root.nodes, [root.key])] };
}

function bodyResult(planned: PlannedQuery, body: string | null | undefined): ExecutionResult {
  // A NULL member made the whole text NULL: answered as a failed root field (masked, coded INTERNAL_SERVER_ERROR).
  if (typeof body !== "string") return failedRoot(planned, new Error("SQL plan answered no data"));
  return textResult(body);
}

/**
 * The statement's text as the result: it is the response body Yoga would
 * write for `{ data }` (Yoga serializes with a result's own `stringify`), and
 * `data` is parsed only when a plugin reads it. Once something sets `data`
 * (the response cache strips its metadata fields) or adds errors or
 * extensions, the result is serialized as usual.
 */
function textResult(body: string): ExecutionResult {
  let data: Record<string, unknown> | null | undefined;
  let replaced = false;
  const result = {
    get data() {
      return (data ??= (JSON.parse(body) as { data: Record<string, unknown> }).data);
    },
    set data(value) {
      data = value;
      replaced = true;
    },
    stringify: (r: ExecutionResult) => (r === result && !replaced && !r.errors && !r.extensions ? body : JSON.stringify(r)),
  };
  return result;
}
