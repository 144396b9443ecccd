import { GraphQLError, type ExecutionResult } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Context } from "../tenancy/context.ts";

/** The offset in `body` of a 1-based line and column. */
function offsetOf(body: string, line: number, column: number): number {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    const next = body.indexOf("\n", offset);
    if (next < 0) break;
    offset = next + 1;
  }
  return offset + column - 1;
}

/**
 * graphql-jit reports a resolver's error with its path and locations but
 * not its AST nodes, and the error masking rebuilds errors from nodes, so
 * `locations` would be lost. Rebuilt here from the document's source (before
 * the masking, which runs after user plugins), so a compiled execution
 * answers exactly as the interpreter does.
 */
export function useJitErrorLocations(): Plugin<Context> {
  return {
    onExecute({ args }) {
      const source = args.document.loc?.source;
      return {
        onExecuteDone({ result, setResult }) {
          if (!source || Symbol.asyncIterator in (result as object)) return;
          const { errors } = result as ExecutionResult;
          if (!errors?.some((e) => !e.nodes && e.locations?.length)) return;
          const located = errors.map((e) => {
            if (e.nodes || !e.locations?.length) return e;
            const original = e.originalError;
            return new GraphQLError(original?.message ?? e.message, {
              source,
              positions: e.locations.map((l) => offsetOf(source.body, l.line, l.column)),
              path: e.path,
              originalError: original,
              extensions: original instanceof GraphQLError ? original.extensions : e.extensions,
            });
          });
          setResult({ ...(result as ExecutionResult), errors: located });
        },
      };
    },
  };
}
