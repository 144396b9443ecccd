import { useGraphQlJit } from "@envelop/graphql-jit";
import { getOperationAST, Kind, type DocumentNode } from "graphql";
import { compileQuery, isCompiledQuery } from "graphql-jit";
import type { Plugin } from "@envelop/core";

/**
 * graphql-jit compiles an operation's selection into a function (and its
 * result into a specialised JSON serialiser): the dashboard costs about a
 * quarter less CPU than with Yoga's interpreter (docs/performance.md). Only
 * a document executed before is compiled: compiling costs milliseconds, so
 * a client sending a new document every time stays on the interpreter.
 * Yoga's parse cache hands out the same document object for the same text,
 * which is what the count is keyed by; documents reach execution only after
 * the query limits, so what is compiled is bounded.
 *
 * Two kinds of documents stay on the interpreter: documents with more than
 * one operation (@envelop/graphql-jit caches the compiled query by document,
 * not by operation name: a second operation of the same document would run
 * the first one's compiled query), and operations with a non-null variable
 * that has a default (graphql-jit refuses it when the variable is omitted,
 * though the default applies).
 */
function jitSafe(document: DocumentNode): boolean {
  const ops = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  return (
    ops.length === 1 &&
    !(ops[0]!.variableDefinitions ?? []).some((v) => v.defaultValue !== undefined && v.type.kind === Kind.NON_NULL_TYPE)
  );
}

export function useJit(): Plugin {
  const seen = new WeakMap<object, number>();
  return useGraphQlJit(
    {},
    {
      enableIf: ({ schema, document, operationName }) => {
        // Subscriptions stay on the interpreter: each event is one execution
        // with its own scope (src/modules/live/hub.ts).
        if (getOperationAST(document, operationName ?? undefined)?.operation === "subscription") return false;
        if (!jitSafe(document)) return false;
        const n = (seen.get(document) ?? 0) + 1;
        if (n === 2 && !isCompiledQuery(compileQuery(schema, document, operationName ?? undefined))) {
          // Not compilable (graphql-jit would answer with its compile errors
          // from then on): this document stays on the interpreter.
          seen.set(document, -Infinity);
          return false;
        }
        seen.set(document, n);
        return n >= 2;
      },
    },
  );
}
