import { locatedError, type ExecutionArgs, type ExecutionResult, type GraphQLSchema } from "graphql";
import type { Plugin } from "graphql-yoga";
import { planQuery, type PlannedQuery } from "../graphql/sql-plan-compile.ts";
import { sqlPlans, type PlanContext } from "../graphql/sql-plan.ts";
import { deploymentSqlPlans } from "../modules/deployments/deployment.sql-plan.ts";
import { projectSqlPlans } from "../modules/projects/project.sql-plan.ts";
import { userSqlPlans } from "../modules/users/user.sql-plan.ts";
import type { Context } from "../tenancy/context.ts";

/**
 * SQL-planned queries (docs/sql-plans.md): a query operation whose every
 * selected field is declared by its module (`*.sql-plan.ts`) and admitted
 * for this caller is answered by one statement that builds the response's
 * JSON text in PostgreSQL, sent with the read transaction's COMMIT; no
 * Prisma call, no resolver, no JSON.stringify. Anything else is executed as
 * before (sql-plan-compile.ts says what falls back).
 *
 * It sits between the request's transaction (authorization facts read,
 * ctx.role PostgreSQL's) and the response cache: it replaces the execute
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
        const planned = planQuery(options.schema, PLANS, ctx as PlanContext, exec.document, exec.operationName, exec.variableValues);
        return planned ? answer(ctx, planned) : executeFn(exec);
      });
    },
  };
}

async function answer(ctx: Context, planned: PlannedQuery): Promise<ExecutionResult> {
  let body: string | null | undefined;
  try {
    // The operation's only statement: it carries the read transaction's COMMIT.
    body = (await ctx.tenantDb.queryRaw<{ body: string | null }>(planned.sql, { last: true }))[0]?.body;
  } catch (err) {
    // As execution reports a failed root field (every planned root field is non-null: no data).
    const root = planned.roots[0]!;
    return { data: null, errors: [locatedError(err, root.nodes, [root.key])] };
  }
  if (typeof body !== "string") {
    // A NULL member made the whole text NULL: answered as a failed root field (masked, coded INTERNAL_SERVER_ERROR).
    const root = planned.roots[0]!;
    return { data: null, errors: [locatedError(new Error("SQL plan answered no data"), root.nodes, [root.key])] };
  }
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
