import type { PlacementRef } from "../db/placement-admin.ts";
import { Prisma } from "../generated/prisma/client.ts";
import { isUuid } from "../uuid.ts";
import type { ScopedTx } from "./scoped-client.ts";

/**
 * What a request's transaction tells PostgreSQL before its first statement:
 * the transaction-local settings the RLS policies read (`app.tenant_id`,
 * wall 2), the caller, the timeouts and a SCHEMA placement's search_path.
 */
export interface TransactionSettings {
  tenantId: string;
  /**
   * Where the tenant's rows live (docs/placement.md): its operations run on
   * that placement's pools, and a SCHEMA placement's transactions set the
   * search_path to its schema alone. Default: POOLED.
   */
  placement?: PlacementRef;
  userId?: string | null;
  /** The API key the request acts as (app.api_key_id: audit entries must name it). */
  apiKeyId?: string | null;
  /** 0 = no limit. */
  statementTimeoutMs: number;
  /** "request": one shared read transaction; "statement": one per query. */
  mode: "request" | "mutation" | "statement";
  /** Upper bound of one transaction. */
  transactionTimeoutMs?: number;
  /**
   * The request's client (Yoga's `request.signal`): once it has gone, a
   * checkout still waiting in the tier pool's queue leaves it and takes no
   * connection (src/db/tier-pool.ts `connectFor`; docs/request-path.md,
   * "A client that goes away"). A transaction already open goes on.
   */
  signal?: AbortSignal;
  /**
   * Read the authorization facts in the opening message (`authorize()`); the
   * API key's secret hash, if any; `cache`: also the response cache's
   * generation (same statement, no round-trip of its own).
   */
  authorization?: { apiKeyHash: string | null; cache?: boolean };
}

/**
 * BEGIN and the settings, one simple-protocol round-trip. The values are
 * inlined, so they are checked first: UUIDs and integers.
 */
export function openSql(settings: TransactionSettings): string {
  return openStatements(settings).join("; ");
}

/**
 * The same two statements apart, for a message of the extended protocol
 * (one Parse each: src/tenancy/request-commit.ts, `readInOneMessage`). The
 * settings are a statement of their own, so whatever follows them reads them.
 */
export function openStatements(settings: TransactionSettings): [begin: string, settings: string] {
  const { tenantId, userId, apiKeyId, statementTimeoutMs } = settings;
  const idleMs = settings.transactionTimeoutMs ?? 60_000;
  if (
    !isUuid(tenantId) ||
    (userId && !isUuid(userId)) ||
    (apiKeyId && !isUuid(apiKeyId)) ||
    ![statementTimeoutMs, idleMs].every((n) => Number.isSafeInteger(n) && n >= 0)
  ) {
    throw new Error("invalid tenant transaction settings");
  }
  // A query operation reads one snapshot: every statement of the request
  // (the facts, a page, the users of its memberships) sees the same
  // committed state, never a row whose neighbour was deleted in between.
  // Mutations stay READ COMMITTED (their writes must not fail on a
  // concurrent update).
  const begin = settings.mode === "request" ? "BEGIN ISOLATION LEVEL REPEATABLE READ" : "BEGIN";
  return [begin, `SELECT set_config('app.tenant_id', '${tenantId}', true), set_config('app.user_id', '${userId ?? ""}', true), set_config('app.api_key_id', '${apiKeyId ?? ""}', true), set_config('statement_timeout', '${statementTimeoutMs}', true), set_config('idle_in_transaction_session_timeout', '${idleMs}', true)${searchPathSql(settings)}`];
}

/**
 * A SCHEMA placement's search_path, with the other settings (same
 * statement): its schema alone, so hand-written SQL names its tables and
 * can reach no other schema's by an unqualified name. The name was
 * checked (tenant_<32 hex>) when the placement was read.
 */
function searchPathSql(settings: TransactionSettings): string {
  const p = settings.placement;
  return p?.placement === "SCHEMA" ? `, set_config('search_path', '"${p.name}"', true)` : "";
}

/** The statement that opens every Prisma transaction of a scope (one not on a request connection). */
export function applySettings(tx: ScopedTx, settings: TransactionSettings) {
  const { tenantId, userId, apiKeyId, statementTimeoutMs } = settings;
  const p = settings.placement;
  const searchPath = p?.placement === "SCHEMA" ? Prisma.sql`, set_config('search_path', ${`"${p.name}"`}, true)` : Prisma.empty;
  return tx.$executeRaw`SELECT set_config('app.tenant_id', ${tenantId}, true),
      set_config('app.user_id', ${userId ?? ""}, true),
      set_config('app.api_key_id', ${apiKeyId ?? ""}, true),
      set_config('statement_timeout', ${String(statementTimeoutMs)}, true)${searchPath}`;
}
