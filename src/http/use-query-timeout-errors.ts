import type { ExecutionResult } from "graphql";
import type { Plugin } from "graphql-yoga";
import { isStatementTimeout, queryTimeoutError } from "../infra/query-timeout.ts";

/**
 * Turns PostgreSQL's statement-timeout cancellation (SQLSTATE 57014) into
 * QUERY_TIMEOUT (s../infra/query-timeout.ts says why).
 */
function mapErrors(result: ExecutionResult): ExecutionResult | undefined {
  if (!result.errors?.some((e) => isStatementTimeout(e.originalError))) return undefined;
  return {
    ...result,
    errors: result.errors.map((e) => (isStatementTimeout(e.originalError) ? queryTimeoutError(e) : e)),
  };
}

/** Runs before Yoga's error masking (user plugins come first). */
export function useQueryTimeoutErrors(): Plugin {
  return {
    onExecute() {
      return {
        onExecuteDone({ result, setResult }) {
          if (Symbol.asyncIterator in (result as object)) return;
          const mapped = mapErrors(result as ExecutionResult);
          if (mapped) setResult(mapped);
        },
      };
    },
  };
}
