import { getOperationAST, GraphQLError, type ExecutionResult } from "graphql";
import type { Plugin } from "graphql-yoga";
import { badIdempotencyKey, IDEMPOTENCY_HEADER } from "../errors.ts";
import type { Context } from "../tenancy/context.ts";
import { decideSavepoints } from "../tenancy/mutation-changes.ts";
import { TransactionRolledBack } from "../tenancy/request-commit.ts";
import { Idempotency, idempotencyKeyOf, requestHash, type IdempotencyClaim } from "./idempotency.ts";

/**
 * Records the operation type on the context; before anything is resolved,
 * has PostgreSQL confirm the caller's authorization facts
 * (src/tenancy/authorize.ts: in the message that opens the request's
 * transaction); ends the request's transaction when execution is done.
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
export function useRequestTransaction(options: { idempotencySecret: string }): Plugin<Context> {
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
    async onExecute({ args, setResultAndStopExecution }) {
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
        await ctx.authorize();
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
