import { GraphQLError } from "graphql";

/**
 * Expected errors: each carries an `extensions.code` (SPEC section 7) and,
 * where it decides the HTTP status, `extensions.http`. Anything else thrown
 * is unexpected and masked by Yoga as INTERNAL_SERVER_ERROR.
 */
export type ErrorCode =
  | "UNAUTHENTICATED"
  | "TENANT_REQUIRED"
  | "TENANT_ACCESS_DENIED"
  | "TENANT_SUSPENDED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "BAD_USER_INPUT"
  | "QUOTA_EXCEEDED"
  | "RATE_LIMITED"
  | "QUERY_TOO_COMPLEX"
  | "BAD_REQUEST"
  | "SERVICE_UNAVAILABLE"
  | "TENANT_MOVING"
  | "SLOW_CONSUMER"
  | "IDEMPOTENCY_KEY_REUSED"
  | "IDEMPOTENCY_KEY_IN_USE"
  | "FEATURE_NOT_AVAILABLE";

export class AppError extends GraphQLError {
  constructor(
    readonly code: ErrorCode,
    message: string,
    extra: Record<string, unknown> = {},
    /** `spec: false`: keep `status` for an error found while validating (Yoga answers those 200 under application/json otherwise). */
    http?: { status?: number; headers?: Record<string, string>; spec?: boolean },
  ) {
    super(message, { extensions: { code, ...extra, ...(http ? { http } : {}) } });
    this.name = "AppError";
  }
}

/** `status` null: no HTTP status of its own (missing credentials on a field). */
export const unauthenticated = (message = "Invalid or missing credentials", status: number | null = 401) =>
  new AppError(
    "UNAUTHENTICATED",
    message,
    {},
    status === null ? undefined : { status, headers: { "WWW-Authenticate": "Bearer" } },
  );

export const tenantRequired = () =>
  new AppError("TENANT_REQUIRED", "This operation needs a tenant: send X-Tenant-ID, a tid claim, or use the tenant subdomain");

export const tenantAccessDenied = (message = "You are not a member of this tenant") =>
  new AppError("TENANT_ACCESS_DENIED", message, {}, { status: 403 });

export const tenantSuspended = (status: string) =>
  new AppError("TENANT_SUSPENDED", "This tenant is not active", { status }, { status: 403 });

export const forbidden = (message: string, extra: Record<string, unknown> = {}) =>
  new AppError("FORBIDDEN", message, extra);

export const notFound = (what = "Object") => new AppError("NOT_FOUND", `${what} not found`);

export const badInput = (field: string, message: string) =>
  new AppError("BAD_USER_INPUT", message, { field });

export const quotaExceeded = (resource: string, limit: number, used: number, requested: number) =>
  new AppError("QUOTA_EXCEEDED", `Quota ${resource} exceeded`, { resource, limit, used, requested });

/**
 * The tenant's plan (or its override) lacks the feature (SPEC section 10).
 * `status`: 403 when the request as a whole is refused (an API key without
 * api_access); none for a single field.
 */
export const featureNotAvailable = (feature: string, plan: string, status?: number) =>
  new AppError(
    "FEATURE_NOT_AVAILABLE",
    `This needs the ${feature} feature, which the tenant's plan does not include`,
    { feature, plan },
    status ? { status } : undefined,
  );

export const rateLimited = (limit: number, resetAt: number, retryAfter: number) =>
  new AppError(
    "RATE_LIMITED",
    "Rate limit exceeded",
    { limit, resetAt, retryAfter },
    { status: 429, headers: { "Retry-After": String(retryAfter) } },
  );

export const queryTooComplex = (message: string) => new AppError("QUERY_TOO_COMPLEX", message);

/** A request that is not a GraphQL request at all (malformed body): an HTTP status of its own, never an echo of the body. */
export const badRequest = (message: string, status = 400) => new AppError("BAD_REQUEST", message, {}, { status });

/** Seconds a client should wait before retrying after SERVICE_UNAVAILABLE. */
export const SERVICE_UNAVAILABLE_RETRY_AFTER = 2;

/** A dependency is down and the operation cannot be answered safely (SPEC section 10): 503 + Retry-After. */
export const serviceUnavailable = (dependency: string, retryAfter = SERVICE_UNAVAILABLE_RETRY_AFTER) =>
  new AppError(
    "SERVICE_UNAVAILABLE",
    "A dependency is unavailable; retry later",
    { dependency, retryAfter },
    { status: 503, headers: { "Retry-After": String(retryAfter) } },
  );

/** Seconds a client should wait before retrying after TENANT_MOVING. */
export const TENANT_MOVING_RETRY_AFTER = 1;

/**
 * The tenant is being moved between placements (SPEC section 10): its writes
 * are refused until the move ends, or the request was routed to the copy it
 * left (a stale directory entry, now evicted). Retryable: 503 + Retry-After.
 */
export const tenantMoving = (retryAfter = TENANT_MOVING_RETRY_AFTER, message = "The tenant is being moved; retry shortly") =>
  new AppError(
    "TENANT_MOVING",
    message,
    { retryAfter },
    { status: 503, headers: { "Retry-After": String(retryAfter) } },
  );

/** The header of idempotent mutations (docs/idempotency.md). */
export const IDEMPOTENCY_HEADER = "Idempotency-Key";

/** An Idempotency-Key sent again with a different request: 422, never run. */
export const idempotencyKeyReused = () =>
  new AppError(
    "IDEMPOTENCY_KEY_REUSED",
    `This ${IDEMPOTENCY_HEADER} was already used with a different request; send a new key for a new request`,
    { header: IDEMPOTENCY_HEADER, field: IDEMPOTENCY_HEADER },
    { status: 422 },
  );

/** The first request with this Idempotency-Key is still running: 409, retry later. */
export const idempotencyKeyInUse = (retryAfter = 1) =>
  new AppError(
    "IDEMPOTENCY_KEY_IN_USE",
    `A request with this ${IDEMPOTENCY_HEADER} is still in progress; retry later`,
    { header: IDEMPOTENCY_HEADER, retryAfter },
    { status: 409, headers: { "Retry-After": String(retryAfter) } },
  );

/** A malformed or misplaced Idempotency-Key header: 400, naming the header. */
export const badIdempotencyKey = (message: string) =>
  new AppError("BAD_REQUEST", message, { header: IDEMPOTENCY_HEADER, field: IDEMPOTENCY_HEADER }, { status: 400 });

/** What a database error carries of its SQLSTATE, as pg, Prisma and its driver adapter wrap it. */
interface SqlErrorFields {
  code?: unknown;
  originalCode?: unknown;
  originalError?: unknown;
  cause?: unknown;
  meta?: { driverAdapterError?: { cause?: { code?: unknown; originalCode?: unknown } } };
}

/** Prisma's codes for the SQLSTATEs it maps itself (unique and foreign-key violations). */
const PRISMA_CODE: Record<string, string> = { "23505": "P2002", "23503": "P2003" };

/**
 * Whether `err` is a failed statement with SQLSTATE `state`, whichever way
 * it reached the caller: pg's error, Prisma's (its own code, or the driver
 * adapter's cause), or either wrapped as an error's cause.
 */
export function hasSqlState(err: unknown, state: string): boolean {
  for (let e = err as SqlErrorFields | undefined, depth = 0; e && typeof e === "object" && depth < 6; e = (e.originalError ?? e.cause) as SqlErrorFields | undefined, depth++) {
    if (e.code === state || e.originalCode === state || (PRISMA_CODE[state] !== undefined && e.code === PRISMA_CODE[state])) return true;
    const cause = e.meta?.driverAdapterError?.cause;
    if (cause && (cause.originalCode === state || cause.code === state)) return true;
  }
  return false;
}

/**
 * For a change's `.catch`: a row refused by a foreign key (23503: what it
 * names was deleted while the statement waited for it) is answered as
 * `what` not found, as when it was never there; anything else is rethrown.
 */
export const referenceGone =
  (what: string) =>
  (err: unknown): never => {
    if (hasSqlState(err, "23503")) throw notFound(what);
    throw err;
  };
