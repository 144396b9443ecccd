import { GraphQLError } from "graphql";
import { SERVICE_UNAVAILABLE_RETRY_AFTER } from "../errors.ts";

/**
 * Noisy neighbours: each plan caps a statement (PLAN_STATEMENT_TIMEOUT_MS,
 * applied per transaction in src/tenancy/tenant-db.ts). PostgreSQL cancels a
 * statement over the cap with SQLSTATE 57014; this plugin turns that one
 * failure into a coded error, QUERY_TIMEOUT, instead of a masked
 * INTERNAL_SERVER_ERROR, so a client can tell "your query was too heavy for
 * your plan" from "the server broke". The message names no SQL.
 */
export const QUERY_TIMEOUT = "QUERY_TIMEOUT";

/** The fields of an error and its causes (GraphQL, Prisma, the driver adapter) read here. */
interface TimeoutFields {
  code?: unknown;
  message?: unknown;
  originalError?: unknown;
  cause?: unknown;
  meta?: { driverAdapterError?: { cause?: { code?: unknown; originalCode?: unknown } } };
}

export function isStatementTimeout(err: unknown): boolean {
  for (let e = err as TimeoutFields | undefined, depth = 0; e && depth < 6; e = (e.originalError ?? e.cause) as TimeoutFields | undefined, depth++) {
    if (e.code === "57014") return true;
    const cause = e.meta?.driverAdapterError?.cause;
    if (cause && (cause.originalCode === "57014" || cause.code === "57014")) return true;
    if (typeof e.message === "string" && e.message.includes("canceling statement due to statement timeout")) return true;
  }
  return false;
}

/**
 * `request`: the request as a whole failed (the context, the message that
 * opens its transaction): 503 with Retry-After, as SERVICE_UNAVAILABLE, so a
 * client retries it. A field's timeout has no status of its own.
 */
export const queryTimeoutError = (from?: GraphQLError, request = false) =>
  new GraphQLError("The query was cancelled: it ran longer than the tenant's plan allows", {
    nodes: from?.nodes,
    // A compiled execution's error has no nodes, only its source and positions
    // (use-jit-error-locations.ts): kept, so its `locations` are the interpreter's.
    source: from?.source,
    positions: from?.positions,
    path: from?.path,
    extensions: request
      ? {
          code: QUERY_TIMEOUT,
          retryAfter: SERVICE_UNAVAILABLE_RETRY_AFTER,
          http: { status: 503, headers: { "Retry-After": String(SERVICE_UNAVAILABLE_RETRY_AFTER) } },
        }
      : { code: QUERY_TIMEOUT },
  });
