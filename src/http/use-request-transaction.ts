import { getOperationAST, GraphQLError, type ExecutionResult } from "graphql";
import type { Plugin } from "graphql-yoga";
import { badIdempotencyKey, IDEMPOTENCY_HEADER } from "../errors.ts";
import type { Context } from "../tenancy/context.ts";
import { decideSavepoints } from "../tenancy/mutation-changes.ts";
import { TransactionRolledBack } from "../tenancy/request-commit.ts";
import type { RequestFacts } from "../tenancy/request-facts.ts";
import { Idempotency, idempotencyKeyOf, requestHash, type IdempotencyClaim } from "./idempotency.ts";
import { noCache } from "./use-response-cache.ts";

/**
 * Records the operation type on the context; before anything is resolved,
 * has PostgreSQL confirm the caller's authorization facts
 * (src/tenancy/authorize.ts: in the message that opens the request's
 * transaction; for a query the SQL planner may answer and the response
 * cache does not look up, deferred to execution, where the planned read
 * carries them: `DeferredAuthorization`); ends the request's transaction
 * when execution is done.
 *
 * A mutation's transaction holds its changes (savepoints), its payload's
 * reads and, with an `Idempotency-Key`, its stored answer
 * (src/http/idempotency.ts); it commits here, once the whole answer is
 * resolved, so no field of the answer needs the database after the COMMIT.
 * When the COMMIT fails, the answer is replaced by the error
 * (SERVICE_UNAVAILABLE when PostgreSQL went away: the change may or may not
 * have been committed, which a retry with the same Idempotency-Key settles).
 *
 * A subscription reads each event in a transaction of its own
 * (src/modules/live/hub.ts opens it, after re-reading the subscriber's
 * access in it): ended once the event's result is produced, and when the
 * stream ends.
 */
export interface RequestTransactionOptions {
  idempotencySecret: string;
  /**
   * The SQL planner is on (SQL_PLANS; src/http/use-sql-plans.ts): a query
   * it may answer has its authorization deferred to its execution, so the
   * planned read can carry the facts in its own message.
   */
  sqlPlans?: boolean;
  /** The response cache is on: a query it looks up needs the facts (its generation) before execution. */
  responseCache?: boolean;
}

/**
 * A query's authorization deferred to its execution (docs/request-path.md,
 * "One message for a planned read"): confirmed once, by whichever comes
 * first, the SQL planner with the facts its one message read
 * (use-sql-plans.ts) or the execute function this plugin sets, which
 * confirms before anything is executed. A failure ends the request's
 * transaction, as a failure before execution does.
 */
export interface DeferredAuthorization {
  confirm(read?: Promise<RequestFacts>): Promise<void>;
}

const deferred = new WeakMap<Context, DeferredAuthorization>();

/** The query's deferred authorization; undefined when it was confirmed before execution (every other operation). */
export const deferredAuthorization = (ctx: Context): DeferredAuthorization | undefined => deferred.get(ctx);

/** Whether the response cache will look this query up (it then needs the facts first: use-response-cache.ts). */
const cacheLookup = (options: RequestTransactionOptions, request: Request | undefined) =>
  !!options.responseCache && !!request && !noCache(request);

export function useRequestTransaction(options: RequestTransactionOptions): Plugin<Context> {
  const idempotency = new Idempotency(options.idempotencySecret);
  const replayed = new WeakSet<Request>();
  /** Requests whose key an operation has taken already (a batch holds several operations). */
  const keyTaken = new WeakSet<Request>();
  return {
    onSubscribe({ args }) {
      const ctx = args.contextValue as Context;
      ctx.operation = "subscription";
      return {
        onSubscribeResult() {
          return {
            onNext: () => ctx.finish(),
            onEnd: () => void ctx.finish(),
          };
        },
      };
    },
    async onExecute({ args, executeFn, setExecuteFn, setResultAndStopExecution }) {
      const ctx = args.contextValue as Context;
      const request = (ctx as unknown as { request: Request }).request;
      const op = getOperationAST(args.document, args.operationName ?? undefined);
      ctx.operation = op?.operation ?? "query";
      let claim: IdempotencyClaim | undefined;
      try {
        const key = ctx.operation === "mutation" ? idempotencyKeyOf(request) : null;
        if (key !== null) {
          if (keyTaken.has(request)) throw badIdempotencyKey(`${IDEMPOTENCY_HEADER} covers one operation: send batched mutations one per request`);
          keyTaken.add(request);
        }
        // Before the request's transaction is made: one root field, no key: no savepoint.
        decideSavepoints(ctx, args.document, op, key);
        if (options.sqlPlans && ctx.operation === "query" && ctx.tenant && !cacheLookup(options, request)) {
          // Deferred to execution: the SQL planner may read the facts in
          // its one message; anything else is confirmed before it runs.
          let confirmed: Promise<void> | undefined;
          const authorization: DeferredAuthorization = {
            confirm: (read) =>
              (confirmed ??= ctx.authorize(read).catch(async (err: unknown) => {
                await ctx.finish().catch(() => undefined);
                throw err;
              })),
          };
          deferred.set(ctx, authorization);
          setExecuteFn(async (exec) => {
            await authorization.confirm();
            return executeFn(exec);
          });
        } else {
          await ctx.authorize();
        }
        if (key !== null) {
          const outcome = await idempotency.claim(ctx, key, requestHash(args.document, args.operationName, args.variableValues));
          if ("replay" in outcome) {
            // Nothing was written: ending the transaction is a formality.
            await ctx.finish().catch(() => undefined);
            replayed.add(request);
            setResultAndStopExecution(outcome.replay);
            return;
          }
          claim = outcome.claimed;
        }
      } catch (err) {
        await ctx.finish().catch(() => undefined);
        throw err;
      }
      return {
        async onExecuteDone({ result, setResult }) {
          if (ctx.operation !== "mutation" || Symbol.asyncIterator in (result as object)) {
            await ctx.finish().catch(() => undefined);
            return;
          }
          const answer = result as ExecutionResult;
          try {
            if (claim) await idempotency.settle(ctx, claim, answer);
          } catch {
            // A failed statement aborted the transaction: the COMMIT below
            // rolls it back and reports it.
          }
          try {
            await ctx.finish();
          } catch (err) {
            setResult(notCommitted(answer, err));
          }
        },
      };
    },
    onResponse({ request, response }) {
      if (replayed.has(request)) response.headers.set("Idempotency-Replayed", "true");
    },
  };
}

/**
 * The answer of a mutation whose COMMIT failed, or that was rolled back
 * (a change without a savepoint failed, src/tenancy/mutation-changes.ts):
 * no data (nothing of it may be taken as done, though a resolver that
 * caught its change's failure returned some). Rolled back: the errors that
 * explain it (the failed field's). The COMMIT
 * itself failed: that error, which the error mask turns into
 * SERVICE_UNAVAILABLE (503, Retry-After) when PostgreSQL is away.
 */
function notCommitted(result: ExecutionResult, err: unknown): ExecutionResult {
  if (err instanceof TransactionRolledBack && result.errors?.length) return { data: null, errors: result.errors };
  return { data: null, errors: [new GraphQLError("The mutation could not be committed", { originalError: err as Error })] };
}
