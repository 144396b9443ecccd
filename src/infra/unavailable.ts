import { GraphQLError } from "graphql";
import { maskError as yogaMaskError } from "graphql-yoga";
import { AppError, serviceUnavailable } from "../errors.ts";
import { isStatementTimeout, queryTimeoutError } from "./query-timeout.ts";
import { isStoreUnavailable } from "./store.ts";

/**
 * A dependency that is down is not a bug: an operation that failed because
 * Redis or PostgreSQL could not answer is SERVICE_UNAVAILABLE (HTTP 503 with
 * Retry-After, SPEC section 10), so a client knows to retry, instead of a
 * masked INTERNAL_SERVER_ERROR. So is a lock PostgreSQL could not take in
 * time (55P03), and a statement cancelled (57014: the plan's timeout, an
 * operator's cancel) is QUERY_TIMEOUT: both retryable, wherever they surface,
 * the opening message of the request's transaction and the context's
 * directory reads included (review-1330 F1: a bare 500 before). Everything
 * else is masked as before.
 */

/** PostgreSQL SQLSTATEs and socket codes meaning "the server is not there right now". */
const PG_UNAVAILABLE_CODES = new Set([
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up, shutting down)
  "55P03", // lock_not_available (lock_timeout): the lock's holder, not this request, decides
  "08000", // connection_exception
  "08001",
  "08003",
  "08006",
  "P1001", // Prisma: can't reach database server
  "P1017", // Prisma: server closed the connection
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
]);

/**
 * A transaction PostgreSQL aborted for another's sake: a deadlock (40P01)
 * or a serialization failure (40001; Prisma's P2034, "write conflict or a
 * deadlock"). Nothing of it was written and the same request may pass
 * when sent again: SERVICE_UNAVAILABLE (retryable), never a masked error
 * (review W2-1: a createDeployment with an Idempotency-Key whose project
 * was being deleted answered INTERNAL_SERVER_ERROR). An Idempotency-Key
 * is released, not kept, for such an answer (src/http/idempotency.ts).
 */
const PG_RETRY_CODES = new Set(["40001", "40P01", "P2034"]);

const PG_UNAVAILABLE_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|timed out waiting for a request slot|is not currently accepting connections|Can't reach database server|the database system is (starting up|shutting down|in recovery mode)|terminating connection due to administrator command|Client has encountered a connection error/i;

/** The fields of an error (or of a driver's error object) this file reads; each is checked before use. */
interface ErrorFields {
  code?: unknown;
  originalCode?: unknown;
  message?: unknown;
  originalError?: unknown;
  cause?: unknown;
  meta?: { driverAdapterError?: unknown };
}

/** Walks an error's causes (GraphQL originalError, Prisma/pg `cause`, driver adapter details). */
function* chain(error: unknown): Generator<ErrorFields> {
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length) {
    const e = queue.shift();
    if (!e || typeof e !== "object" || seen.has(e)) continue;
    seen.add(e);
    const o = e as ErrorFields;
    yield o;
    queue.push(o.originalError, o.cause, o.meta?.driverAdapterError);
  }
}

/** The dependency an error says is unavailable ("redis", "postgres"), or null. */
export function unavailableDependency(error: unknown): string | null {
  for (const e of chain(error)) {
    // A deliberate answer (possibly about a dependency already) stays as it is.
    if (e instanceof AppError) return null;
    if (isStoreUnavailable(e)) return "redis";
    const code = typeof e.code === "string" ? e.code : typeof e.originalCode === "string" ? e.originalCode : undefined;
    if (code && (PG_UNAVAILABLE_CODES.has(code) || PG_RETRY_CODES.has(code))) return "postgres";
    if (typeof e.message === "string" && PG_UNAVAILABLE_MESSAGE.test(e.message)) return "postgres";
  }
  return null;
}

/**
 * Yoga's maskError, with unavailable dependencies answered as
 * SERVICE_UNAVAILABLE and cancelled statements as QUERY_TIMEOUT. A field's
 * error keeps its path (and no HTTP status of its own: the rest of the data
 * stays readable); a request's error (no path: the context, the opening
 * message, the COMMIT) is 503 with Retry-After.
 */
export function maskError(error: unknown, message: string, isDev?: boolean): Error {
  if (isStatementTimeout(error)) {
    const path = error instanceof GraphQLError ? error.path : undefined;
    return path ? queryTimeoutError(error as GraphQLError) : queryTimeoutError(undefined, true);
  }
  const dependency = unavailableDependency(error);
  if (dependency) {
    const unavailable = serviceUnavailable(dependency);
    if (!(error instanceof GraphQLError) || !error.path) return unavailable;
    // A resolver's error keeps its field path and location: the rest of the data stays readable.
    return new GraphQLError(unavailable.message, { nodes: error.nodes, path: error.path, extensions: unavailable.extensions });
  }
  return yogaMaskError(error, message, isDev);
}
