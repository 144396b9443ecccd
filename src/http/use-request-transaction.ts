import { getOperationAST } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Context } from "../tenancy/context.ts";

/** Records the operation type on the context and ends the request's read transaction when execution is done. */
export function useRequestTransaction(): Plugin<Context> {
  return {
    onExecute({ args }) {
      const ctx = args.contextValue as Context;
      const op = getOperationAST(args.document, args.operationName ?? undefined);
      ctx.operation = op?.operation ?? "query";
      return {
        async onExecuteDone() {
          await ctx.finish();
        },
      };
    },
  };
}
