import type pg from "pg";
import { isUuid } from "../uuid.ts";
import type { Plan, QuotaResource, Role, TenantStatus } from "../generated/prisma/enums.ts";
import { RequestConnection, requestSlotsOf, type RequestSlot, type RequestSlots } from "../db/request-slots.ts";
import { tierClient } from "../db/clients.ts";
import { assertPlacementOf, type PlacementRef } from "../db/placement-admin.ts";
import { moveFenceSql } from "../db/placement-fence.ts";
import { ROUTE_SQL } from "../db/placement-route.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";
import { Prisma } from "../generated/prisma/client.ts";
import { tenantScope, type TenantScope } from "./tenant-scope.ts";
import { withOutbox, type LiveChange, type LivePublisher } from "../infra/live-events.ts";

/**
 * The one tenant-scoped database handle of a request.
 *
 * Both walls meet here: every query goes through the tenant-scope extension
 * (wall 1) and runs inside a transaction that first sets the
 * transaction-local `app.tenant_id` that the RLS policies read (wall 2).
 *
 * Request-path design (docs/request-path.md): a query operation opens ONE
 * read transaction (before execution, through `authorize()`; else on its
 * first database access), and every resolver of the request shares it: one round-trip for BEGIN and the settings, the
 * queries, COMMIT. The transaction is a plain pooled `pg` connection of the
 * tenant's tier pool: hand-written SQL runs on it directly, Prisma's queries
 * reach it through a request slot borrowed while they are in flight
 * (src/db/request-slots.ts), and no Prisma interactive transaction is
 * involved.
 *
 * A mutation operation ("mutation" mode) holds one transaction as well, on
 * one connection: each change runs with its audit entry as a savepoint of it
 * (`transaction()`), the payload is read in it, and it commits once the
 * whole answer is resolved (`finish()`, which reports a failed COMMIT), so
 * no answer needs the database after the COMMIT (docs/idempotency.md). One
 * connection only: a mutation never holds one pooled connection while
 * waiting for another.
 *
 * Authorization facts (docs/revocation.md): with `authorization` set, the
 * message that opens the request transaction also runs
 * `app_request_facts(...)`, so PostgreSQL reports the caller's membership,
 * role, key validity, tenant status, plan, limits and platform-admin flag
 * in the same round-trip (`authorize()`). In statement mode `authorize()`
 * sends one message of its own: BEGIN, the settings, the facts, COMMIT.
 */

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** What PostgreSQL says about the caller, in the request's transaction (see the migration of app_request_facts). */
export interface RequestFacts {
  /** The tenant named by app.tenant_id; null: it does not exist (any more). */
  tenant: {
    status: TenantStatus;
    plan: Plan;
    overrides: Partial<Record<QuotaResource, number | null>>;
    /** The feature override (a JSON array); null: the plan's. */
    features: unknown;
    domain: string | null;
    idp: { issuer: string; jwksUrl: string; audience: string | null } | null;
    storageBytes: number;
  } | null;
  /** app.user_id's membership in it; null: none. */
  member: { id: string; role: Role } | null;
  /** users.is_platform_admin of app.user_id; null: no such user. */
  admin: boolean | null;
  /** The role of the API key when its secret is valid now; null otherwise. */
  key: Role | null;
  /**
   * The tenant's response-cache generation and TTL override (app_request_cache,
   * read beside the facts when the request may use the response cache;
   * docs/response-cache.md).
   */
  cache?: { generation: string; ttl: number | null };
  /**
   * Where the tenant's rows are, as the tenants row of the database that
   * answered says (`POOLED`, `SCHEMA:<name>`, `DATABASE:<name>`; null: no
   * row). A request routed by a stale directory entry sees another route
   * than its own (docs/placement.md, "Moving a tenant").
   */
  route?: string | null;
  /** Mutations: false while a move of the tenant holds its write fence (src/db/placement-fence.ts). */
  writable?: boolean;
}

export type ScopedClient = ReturnType<typeof scopedClient>;
export type ScopedTx = Omit<ScopedClient, "$connect" | "$disconnect" | "$on" | "$transaction" | "$extends">;

export function scopedClient(base: PrismaClient, scope: TenantScope) {
  return base.$extends(tenantScope(scope));
}

/** The client of a TenantDb: scoped by wall 1, or (tests proving wall 2 alone) the plain one. */
function clientFor(base: PrismaClient, scope: TenantScope, withScope: boolean): ScopedClient {
  return withScope ? scopedClient(base, scope) : (base as unknown as ScopedClient);
}

export interface TenantDbOptions {
  tenantId: string;
  /**
   * The tenant's plan: its operations run on that plan's tier pool
   * (src/db/clients.ts). Without it, on the client given. A plan that
   * changes during a request (authorize() reads the true one) applies from
   * the next request.
   */
  plan?: Plan;
  /**
   * Where the tenant's rows live (docs/placement.md): its operations run on
   * that placement's pools, and a SCHEMA placement's transactions set the
   * search_path to its schema alone. Default: POOLED.
   */
  placement?: PlacementRef;
  userId?: string | null;
  /** The API key the request acts as (app.api_key_id: audit entries must name it). */
  apiKeyId?: string | null;
  /**
   * Wall 1, the Prisma tenant scope. Default on. Only tests turn it off, to
   * show that row-level security (wall 2) isolates tenants on its own
   * (test/helpers/app.ts, TEST_TENANT_WALL=rls; docs/database.md).
   */
  tenantScope?: boolean;
  /** 0 = no limit. */
  statementTimeoutMs: number;
  /** "request": one shared read transaction; "statement": one per query. */
  mode: "request" | "mutation" | "statement";
  /** Upper bound of one transaction. */
  transactionTimeoutMs?: number;
  /**
   * Read the authorization facts in the opening message (`authorize()`); the
   * API key's secret hash, if any; `cache`: also the response cache's
   * generation (same statement, no round-trip of its own).
   */
  authorization?: { apiKeyHash: string | null; cache?: boolean };
  /** Receives the live changes a transaction registered, once it has committed. */
  publisher?: LivePublisher;
  /**
   * Mutation mode: runs once the COMMIT succeeded, before the live changes
   * and the afterCommit hooks (a placed tenant's directory rows go back to
   * the main database before the caches are invalidated; docs/placement.md).
   */
  onCommitted?: () => Promise<void>;
}

/** The request transaction: its connection, and the slot its Prisma calls in flight borrowed. */
interface Session {
  connection: RequestConnection;
  facts?: RequestFacts;
  /** The borrowed slot and its scoped client, shared by the calls in flight; undefined when none is. */
  lease?: { ready: Promise<{ slot: RequestSlot; scoped: ScopedClient }>; calls: number };
  /** Settles when no Prisma call is in flight. */
  idle: Promise<void>;
  settleIdle?: () => void;
}

/** A mutation's COMMIT ended as a rollback: a statement of the transaction had failed. */
export class TransactionRolledBack extends Error {
  constructor() {
    super("the request's transaction was rolled back: a statement of it failed");
  }
}

/** The facts row of the last result of the opening message. */
function factsOf(results: Pick<pg.QueryResult, "rows">[]): RequestFacts {
  const row = results[results.length - 1]?.rows[0];
  const facts = row?.facts as RequestFacts | undefined;
  if (!facts) throw new Error("app_request_facts returned nothing");
  if (row.cache) facts.cache = row.cache;
  if ("route" in row) facts.route = row.route as string | null;
  if ("writable" in row) facts.writable = row.writable as boolean;
  return facts;
}

export class TenantDb {
  readonly client: ScopedTx;
  readonly tenantId: string;
  private scopedOnBase: ScopedClient | undefined;
  private readonly slots: RequestSlots | undefined;
  private readonly options: TenantDbOptions;
  private readonly base: PrismaClient;
  private session: Promise<Session> | undefined;
  private closed = false;
  /** Mutation mode: the savepoint transactions run one at a time (their savepoints must nest, never interleave). */
  private changes: Promise<unknown> = Promise.resolve();
  /** Mutation mode: live changes and hooks waiting for the COMMIT. */
  private readonly committed: { live: [string, LiveChange[]][]; hooks: (() => Promise<unknown>)[] } = { live: [], hooks: [] };

  constructor(
    /** The client this scope was made on (before the tier's pool was picked). */
    private readonly root: PrismaClient,
    options: TenantDbOptions,
  ) {
    const placed = options.placement && options.placement.placement !== "POOLED";
    // The route comes from the directory cache (Redis): it only proposes. A
    // placement's name is derived from its tenant's id, so a route naming
    // another tenant's schema or database (or not a placement at all) is refused.
    if (placed) assertPlacementOf(options.tenantId, options.placement!);
    // A placed tenant's subscription reads too run in its placement (on its plan's pools there).
    this.base = placed ? tierClient(root, options.plan ?? "PRO", options.placement) : options.plan ? tierClient(root, options.plan) : root;
    this.options = { ...options };
    this.tenantId = options.tenantId;
    this.client = this.lazyClient();
    // A PrismaClient not made by createDatabases has no request slots: its
    // calls then run one transaction each, as a mutation's do.
    this.slots = options.mode !== "statement" ? requestSlotsOf(this.base) : undefined;
  }

  private get scope(): TenantScope {
    return { tenantId: this.options.tenantId, userId: this.options.userId };
  }

  /** The scoped client on the shared PrismaClient (mutations, fallback). */
  private get scoped(): ScopedClient {
    return (this.scopedOnBase ??= clientFor(this.base, this.scope, this.options.tenantScope !== false));
  }

  /**
   * BEGIN and the settings, one simple-protocol round-trip. The values are
   * inlined, so they are checked first: UUIDs and integers.
   */
  private openSql(): string {
    const { tenantId, userId, apiKeyId, statementTimeoutMs } = this.options;
    const idleMs = this.options.transactionTimeoutMs ?? 60_000;
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
    const begin = this.options.mode === "request" ? "BEGIN ISOLATION LEVEL REPEATABLE READ" : "BEGIN";
    return `${begin}; SELECT set_config('app.tenant_id', '${tenantId}', true), set_config('app.user_id', '${userId ?? ""}', true), set_config('app.api_key_id', '${apiKeyId ?? ""}', true), set_config('statement_timeout', '${statementTimeoutMs}', true), set_config('idle_in_transaction_session_timeout', '${idleMs}', true)${this.searchPathSql()}`;
  }

  /**
   * A SCHEMA placement's search_path, with the other settings (same
   * statement): its schema alone, so hand-written SQL names its tables and
   * can reach no other schema's by an unqualified name. The name was
   * checked (tenant_<32 hex>) when the placement was read.
   */
  private searchPathSql(): string {
    const p = this.options.placement;
    return p?.placement === "SCHEMA" ? `, set_config('search_path', '"${p.name}"', true)` : "";
  }

  /**
   * The facts statement, sent after the settings (a statement of its own, so
   * it runs after set_config whatever the planner does). Inlined values:
   * checked to be a UUID and a SHA-256 hex digest.
   */
  private factsSql(): string | undefined {
    const auth = this.options.authorization;
    if (!auth) return undefined;
    const { apiKeyId } = this.options;
    const { apiKeyHash } = auth;
    if ((apiKeyId && !isUuid(apiKeyId)) || (apiKeyHash && !SHA256_HEX.test(apiKeyHash))) {
      throw new Error("invalid authorization parameters");
    }
    const literal = (v: string | null | undefined) => (v ? `'${v}'` : "NULL");
    const cache = auth.cache ? ", app_request_cache() AS cache" : "";
    // The route PostgreSQL confirms, and for a mutation the shared side of
    // the move fence (held to its COMMIT; refused, not waited for, while a
    // move holds or waits for the exclusive side).
    const tenant = `'${this.options.tenantId}'`;
    const route = `, (SELECT ${ROUTE_SQL} FROM tenants WHERE id = ${tenant}::uuid) AS route`;
    const fence = this.options.mode === "mutation" ? `, pg_try_advisory_xact_lock_shared(${moveFenceSql(`${tenant}::text`)}) AS writable` : "";
    return `SELECT app_request_facts(${literal(apiKeyId)}, ${literal(apiKeyHash)}) AS facts${cache}${route}${fence}`;
  }

  /** The request's session, opened on first use. */
  private open(slots: RequestSlots): Promise<Session> {
    if (this.closed) return Promise.reject(new Error("the request's transaction has ended"));
    this.session ??= (async () => {
      let connection: pg.PoolClient | undefined;
      let facts: RequestFacts | undefined;
      try {
        const factsSql = this.factsSql();
        connection = await slots.pool.connect();
        const results = (await connection.query(factsSql ? `${this.openSql()}; ${factsSql}` : this.openSql())) as unknown as pg.QueryResult[];
        if (factsSql) facts = factsOf(results);
      } catch (err) {
        connection?.release(err as Error);
        throw err;
      }
      return { connection: new RequestConnection(connection), facts, idle: Promise.resolve() };
    })();
    return this.session;
  }

  /**
   * Runs a Prisma call of the request on a borrowed slot: the calls in
   * flight together (those of one tick, which Prisma batches) share one;
   * the last to settle gives it back.
   */
  private async withSlot<T>(slots: RequestSlots, session: Session, fn: (tx: ScopedTx) => Promise<T>): Promise<T> {
    let lease = session.lease;
    if (!lease) {
      session.idle = new Promise<void>((resolve) => (session.settleIdle = resolve));
      const ready = slots.acquire().then((slot) => {
        slot.pool.connection = session.connection;
        return { slot, scoped: clientFor(slot.prisma, this.scope, this.options.tenantScope !== false) };
      });
      lease = session.lease = { ready, calls: 0 };
    }
    const current = lease;
    current.calls++;
    try {
      const { scoped } = await current.ready;
      return await fn(scoped as ScopedTx);
    } finally {
      if (--current.calls === 0) {
        session.lease = undefined;
        const settle = session.settleIdle;
        session.settleIdle = undefined;
        await current.ready.then(
          ({ slot }) => slots.release(slot),
          () => {},
        );
        settle?.();
      }
    }
  }

  /**
   * The authorization facts, from PostgreSQL. Request mode: read by the
   * message that opens the request transaction (no round-trip of its own).
   * Statement mode: one message, BEGIN + settings + facts + COMMIT.
   */
  async authorize(): Promise<RequestFacts> {
    const factsSql = this.factsSql();
    if (!factsSql) throw new Error("TenantDb without authorization parameters");
    if (this.slots) return (await this.open(this.slots)).facts!;
    const pool = requestSlotsOf(this.base)?.pool;
    if (!pool) {
      // A PrismaClient not made by createDatabases: a Prisma transaction.
      return this.transaction(async (tx) => factsOf([{ rows: await tx.$queryRawUnsafe<{ facts: RequestFacts }[]>(factsSql) }]));
    }
    const connection = await pool.connect();
    try {
      const results = (await connection.query(`${this.openSql()}; ${factsSql}; COMMIT`)) as unknown as pg.QueryResult[];
      connection.release();
      return factsOf(results.slice(0, -1));
    } catch (err) {
      // A failed statement leaves the rest of the message unrun (and the
      // transaction open): the connection is discarded, not reused.
      connection.release(err as Error);
      throw err;
    }
  }

  /** Changes the statement timeout (the plan the request started with was stale). */
  async setStatementTimeout(ms: number): Promise<void> {
    if (!Number.isSafeInteger(ms) || ms < 0) throw new Error("invalid statement timeout");
    this.options.statementTimeoutMs = ms;
    if (this.session && this.slots) {
      const { connection } = await this.session;
      await connection.query(`SELECT set_config('statement_timeout', '${ms}', true)`);
    }
  }

  /**
   * The same scope (tenant, caller, plan, statement timeout) in statement
   * mode: each statement a short transaction of its own that re-reads the
   * authorization facts. For what outlives the request's own transaction
   * (the /export stream, read after the audit entry has committed).
   */
  statements(): TenantDb {
    return new TenantDb(this.root, { ...this.options, mode: "statement" });
  }

  /** The statement that opens every Prisma transaction of this scope. */
  private applySettings(tx: ScopedTx) {
    const { tenantId, userId, apiKeyId, statementTimeoutMs } = this.options;
    const p = this.options.placement;
    const searchPath = p?.placement === "SCHEMA" ? Prisma.sql`, set_config('search_path', ${`"${p.name}"`}, true)` : Prisma.empty;
    return tx.$executeRaw`SELECT set_config('app.tenant_id', ${tenantId}, true),
      set_config('app.user_id', ${userId ?? ""}, true),
      set_config('app.api_key_id', ${apiKeyId ?? ""}, true),
      set_config('statement_timeout', ${String(statementTimeoutMs)}, true)${searchPath}`;
  }

  /**
   * Runs `fn` in its own transaction (a mutation and its audit entry); the
   * live changes it registers (`publishAfterCommit`) go out after COMMIT.
   */
  transaction<T>(fn: (tx: ScopedTx) => Promise<T>): Promise<T> {
    const slots = this.slots;
    if (this.options.mode === "mutation" && slots) {
      // A savepoint of the mutation's transaction (the slot's pool turns
      // Prisma's BEGIN/COMMIT/ROLLBACK into SAVEPOINT/RELEASE/ROLLBACK TO):
      // an error undoes this change alone; the COMMIT comes in finish().
      const deferred: LivePublisher = { publish: (tenantId, changes) => void this.committed.live.push([tenantId, changes]) };
      const run = this.changes.then(() =>
        withOutbox(deferred, (track) =>
          this.open(slots).then((s) =>
            this.withSlot(slots, s, (scoped) =>
              (scoped as unknown as ScopedClient).$transaction(
                async (tx) => {
                  track(tx);
                  return fn(tx as ScopedTx);
                },
                { maxWait: 5_000, timeout: this.options.transactionTimeoutMs ?? 60_000 },
              ),
            ),
          ),
        ),
      );
      this.changes = run.catch(() => undefined);
      return run;
    }
    return withOutbox(this.options.publisher, (track) =>
      this.scoped.$transaction(
        async (tx) => {
          track(tx);
          await this.applySettings(tx as ScopedTx);
          return fn(tx as ScopedTx);
        },
        { maxWait: 5_000, timeout: this.options.transactionTimeoutMs ?? 60_000 },
      ),
    );
  }

  /**
   * Raw SQL inside the scope. Raw SQL bypasses wall 1: always filter
   * tenant_id. On the request connection, columns come back as `pg` parses
   * them (timestamptz as Date, json parsed, uuid and enums as strings).
   */
  queryRaw<T>(sql: Prisma.Sql): Promise<T[]> {
    if (this.slots) {
      return this.open(this.slots).then(async (s) => ((await s.connection.query(sql.text, sql.values as unknown[])) as pg.QueryResult).rows as T[]);
    }
    return this.run((tx) => tx.$queryRaw<T[]>(sql));
  }

  /** Runs database calls inside the request's scope. */
  run<T>(fn: (tx: ScopedTx) => Promise<T>): Promise<T> {
    const slots = this.slots;
    if (slots) return this.open(slots).then((s) => this.withSlot(slots, s, fn));
    return this.transaction(fn);
  }

  /**
   * Runs `hook` once the changes are committed: at once outside mutation
   * mode (each change committed on its own), after the COMMIT of finish()
   * in it (never, if the COMMIT fails). For what must follow a commit, such
   * as evicting a cache entry the change made stale.
   */
  async afterCommit(hook: () => Promise<unknown>): Promise<void> {
    if (this.options.mode === "mutation" && this.slots && !this.closed) this.committed.hooks.push(hook);
    else await hook();
  }

  /**
   * Ends the request transaction. A read transaction: commit and rollback
   * are alike, and a failure is of no consequence. A mutation: COMMIT, and
   * throws when it failed (the connection broke: whether it committed is
   * unknown) or ended as a rollback (a statement of it had failed:
   * `TransactionRolledBack`); once committed, publishes the live changes and
   * runs the afterCommit hooks (their failures are theirs).
   *
   * Calls while one is under way share it (a stream's last event and its
   * end both finish the event's scope). Before, each sent its COMMIT and
   * released the connection: the second COMMIT and release reached the
   * request that had been handed the connection in between, whose
   * connection went back to the pool while it still used it.
   */
  finish(): Promise<void> {
    this.finishing ??= this.end().finally(() => {
      this.finishing = undefined;
    });
    return this.finishing;
  }

  /** The finish under way, if one is. */
  private finishing: Promise<void> | undefined;

  private async end(): Promise<void> {
    this.closed = true;
    if (!this.session || !this.slots) return;
    const session = await this.session.catch(() => undefined);
    this.session = undefined;
    if (!session) return;
    const mutation = this.options.mode === "mutation";
    let failure: unknown;
    let wrote = false;
    try {
      await this.changes;
      // After every Prisma call in flight has settled (a late one must not
      // reach the connection once it is back in the pool), and through the
      // connection's queue: after every statement sent. COMMIT also ends an
      // aborted transaction (as a rollback).
      await session.idle;
      // The post-commit hook (a placed tenant's directory sync) runs only for
      // a mutation that wrote: never for one refused (TENANT_MOVING) or that
      // changed nothing, which would copy rows it did not change
      // (docs/placement.md, "Moving a tenant").
      if (mutation && this.options.onCommitted) wrote = session.facts?.writable !== false && (await this.wroteAnything(session));
      const result = (await session.connection.query("COMMIT")) as pg.QueryResult;
      if (mutation && result.command === "ROLLBACK") failure = new TransactionRolledBack();
      session.connection.client.release();
    } catch (err) {
      failure = err;
      session.connection.client.release(err as Error);
    }
    if (!mutation) return;
    const { live, hooks } = this.committed;
    this.committed.live = [];
    this.committed.hooks = [];
    if (failure) throw failure;
    if (wrote) await this.options.onCommitted?.();
    if (this.options.publisher) {
      const byTenant = new Map<string, LiveChange[]>();
      for (const [tenantId, changes] of live) byTenant.set(tenantId, [...(byTenant.get(tenantId) ?? []), ...changes]);
      for (const [tenantId, changes] of byTenant) this.options.publisher.publish(tenantId, changes);
    }
    await Promise.allSettled(hooks.map((h) => h()));
  }

  /** Whether the request transaction wrote (was given a transaction id); an aborted one did not. */
  private async wroteAnything(session: Session): Promise<boolean> {
    try {
      const result = (await session.connection.query("SELECT pg_current_xact_id_if_assigned() IS NOT NULL AS wrote")) as pg.QueryResult<{ wrote: boolean }>;
      return result.rows[0]?.wrote === true;
    } catch {
      return false;
    }
  }

  /**
   * A client whose model delegates are available synchronously (Pothos and
   * services call `db.project.findMany(...)`), opening the transaction on
   * first use.
   */
  private lazyClient(): ScopedTx {
    const cache = new Map<string, unknown>();
    const call = (path: string[], args: unknown[]) =>
      this.run((tx) => {
        // `any`: a method reached by its path of names (delegate, operation), which no Prisma type describes.
        let target: any = tx;
        for (const p of path.slice(0, -1)) target = target[p];
        return target[path[path.length - 1]!](...args);
      });
    return new Proxy({} as ScopedTx, {
      // Pothos finds model delegates with `"project" in client` (node/nodes).
      has: (_, key) => typeof key === "string" && key !== "then" && (key.startsWith("$") || key in this.base),
      get: (_, key) => {
        if (typeof key !== "string") return undefined;
        if (key === "then") return undefined;
        if (key.startsWith("$")) return (...args: unknown[]) => call([key], args);
        let delegate = cache.get(key);
        if (!delegate) {
          delegate = new Proxy(
            {},
            {
              get: (__, op) => (typeof op === "string" ? (...args: unknown[]) => call([key, op], args) : undefined),
            },
          );
          cache.set(key, delegate);
        }
        return delegate;
      },
    });
  }
}
