import { getOperationAST } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Context } from "../tenancy/context.ts";

/**
 * Records the operation type on the context; before anything is resolved,
 * has PostgreSQL confirm the caller's authorization facts
 * (src/tenancy/authorize.ts: for a query, in the message that opens its
 * transaction); ends the request's read transaction when execution is done.
 * A subscription reads each event in a transaction of its own
 * (src/modules/live/hub.ts opens it, after re-reading the subscriber's
 * access in it): ended once the event's result is produced, and when the
 * stream ends.
 */
export function useRequestTransaction(): Plugin<Context> {
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
    async onExecute({ args }) {
      const ctx = args.contextValue as Context;
      const op = getOperationAST(args.document, args.operationName ?? undefined);
      ctx.operation = op?.operation ?? "query";
      try {
        await ctx.authorize();
      } catch (err) {
        await ctx.finish();
        throw err;
      }
      return {
        async onExecuteDone() {
          await ctx.finish();
        },
      };
    },
  };
}
