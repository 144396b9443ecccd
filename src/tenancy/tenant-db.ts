import { requestSlotsOf, type RequestSlots } from "../db/request-slots.ts";
import { tierClient } from "../db/clients.ts";
import { assertPlacementOf } from "../db/placement-admin.ts";
import type { Prisma, PrismaClient } from "../generated/prisma/client.ts";
import { withOutbox, type LivePublisher } from "../infra/live-events.ts";
import type { TenantDbOptions } from "./tenant-db-options.ts";
import { lazyClient } from "./lazy-client.ts";
import { runWithoutSavepoint } from "./mutation-changes.ts";
import { commitWith, endSession, readInOneMessage, type Committed, type ReadWithFacts } from "./request-commit.ts";
import { factsInOneMessage, factsOf, factsSql, gatedFacts, type PlannedFor, type RequestFacts } from "./request-facts.ts";
import { openSession, withSlot, type Session } from "./request-session.ts";
import { clientFor, type ScopedClient, type ScopedTx } from "./scoped-client.ts";
import type { TenantScope } from "./tenant-scope-model.ts";
import { applySettings } from "./transaction-settings.ts";

/**
 * The one tenant-scoped database handle of a request. Both walls meet here:
 * every query goes through the tenant-scope extension (wall 1) inside a
 * transaction that first sets the `app.tenant_id` the RLS policies read
 * (wall 2). A query operation shares ONE read transaction among all its
 * resolvers; a mutation holds one too, each change a savepoint of it with
 * its audit entry, committed once the answer is resolved (docs/request-path.md,
 * docs/idempotency.md, docs/revocation.md for the facts read when it opens).
 */

export class TenantDb {
  readonly client: ScopedTx;
  readonly tenantId: string;
  private scopedOnBase: ScopedClient | undefined;
  private readonly slots: RequestSlots | undefined;
  private readonly options: TenantDbOptions;
  private readonly base: PrismaClient;
  private session: Promise<Session> | undefined;
  private closed = false;
  /** The facts that admitted the request: a later transaction of it must read the same (request-session.ts). */
  private admitted: RequestFacts | undefined;
  /** Transactions ended by their last statement (queryRaw `last`), until PostgreSQL answered. */
  private ending: Promise<unknown> = Promise.resolve();
  /** Mutation mode: the savepoint transactions run one at a time (their savepoints must nest, never interleave). */
  private changes: Promise<unknown> = Promise.resolve();
  /** Mutation mode: live changes and hooks waiting for the COMMIT. */
  private readonly committed: Committed = { live: [], hooks: [], rollbackHooks: [] };

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
    this.client = lazyClient((fn) => this.run(fn), (key) => key in this.base);
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

  /** The request's session, opened on first use. */
  private open(slots: RequestSlots): Promise<Session> {
    if (this.closed) return Promise.reject(new Error("the request's transaction has ended"));
    this.session ??= openSession(slots, this.options, this.admitted);
    return this.session;
  }

  /** A Prisma call of the request, on a slot borrowed by the calls in flight. */
  private onSlot<T>(slots: RequestSlots, session: Session, fn: (tx: ScopedTx) => Promise<T>): Promise<T> {
    return withSlot(slots, session, (prisma) => clientFor(prisma, this.scope, this.options.tenantScope !== false), fn);
  }

  /**
   * The authorization facts, from PostgreSQL. Request mode: read by the
   * message that opens the request transaction (no round-trip of its own).
   * Statement mode: one message, BEGIN + settings + facts + COMMIT.
   */
  async authorize(): Promise<RequestFacts> {
    const sql = factsSql(this.options);
    if (!sql) throw new Error("TenantDb without authorization parameters");
    if (this.slots) return (this.admitted = (await this.open(this.slots)).facts!);
    const pool = requestSlotsOf(this.base)?.pool;
    if (!pool) {
      // A PrismaClient not made by createDatabases: a Prisma transaction.
      return this.transaction(async (tx) => factsOf([{ rows: await tx.$queryRawUnsafe<{ facts: RequestFacts }[]>(sql) }]));
    }
    return (this.admitted = await factsInOneMessage(pool, this.options, sql));
  }

  /**
   * A planned read as the request's whole transaction, in ONE message:
   * BEGIN, the settings, the authorization facts, `sql` and COMMIT
   * (request-commit.ts `readInOneMessage`; docs/request-path.md, "One
   * message for a planned read"). The facts statement sets the gate
   * (request-facts.ts `gatedFacts`): on only when the facts admit
   * `candidate`, and `sql` must do nothing without it (sql-plan-compile.ts
   * `gated`). The caller must confirm the facts before it uses the rows
   * (src/http/use-sql-plans.ts). Undefined where it does not apply:
   * statement mode (no request transaction), a transaction of the request
   * already opened, no authorization parameters, or a candidate whose
   * values cannot be inlined. Anything
   * after it opens a transaction of its own, whose facts must equal these
   * (`admitted`, as after `endWith`).
   */
  readWithFacts<T>(sql: Prisma.Sql, candidate: PlannedFor): Promise<ReadWithFacts<T>> | undefined {
    const slots = this.slots;
    const facts = gatedFacts(this.options, candidate);
    if (!slots || !facts || this.options.mode !== "request" || this.session || this.closed) return undefined;
    const read = readInOneMessage<T>(slots.pool, this.options, facts, sql.text, sql.values as unknown[]).then((r) => {
      this.admitted = r.facts;
      return r;
    });
    // finish() waits for it: the connection is back in the pool by then.
    this.ending = Promise.all([this.ending, read.catch(() => undefined)]);
    return read;
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
            this.onSlot(slots, s, (scoped) =>
              this.options.savepoints === false ? runWithoutSavepoint(scoped, track, this.committed, fn) : (scoped as unknown as ScopedClient).$transaction(
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
          await applySettings(tx as ScopedTx, this.options);
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
  queryRaw<T>(sql: Prisma.Sql, options?: { last?: boolean }): Promise<T[]> {
    if (this.slots && options?.last && this.options.mode === "request") return this.endWith<T>(this.slots, sql);
    if (this.slots) {
      return this.open(this.slots).then(async (s) => ((await s.connection.query(sql.text, sql.values as unknown[])) as { rows: T[] }).rows);
    }
    return this.run((tx) => tx.$queryRaw<T[]>(sql));
  }

  /**
   * A read's last statement, sent with its COMMIT in one message once the
   * Prisma calls in flight have settled (request-commit.ts `commitWith`).
   * Anything later opens a transaction of its own, with the facts again.
   */
  private endWith<T>(slots: RequestSlots, sql: Prisma.Sql): Promise<T[]> {
    const session = this.open(slots);
    this.session = undefined;
    const rows = session.then(async (s) => {
      await s.idle;
      return commitWith<T>(s, sql.text, sql.values as unknown[]);
    });
    this.ending = Promise.all([this.ending, rows.catch(() => undefined)]);
    return rows;
  }

  /** Runs database calls inside the request's scope. */
  run<T>(fn: (tx: ScopedTx) => Promise<T>): Promise<T> {
    const slots = this.slots;
    if (slots) return this.open(slots).then((s) => this.onSlot(slots, s, fn));
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
   * Runs `hook` if the mutation's transaction does not commit: ROLLBACK (a
   * failed statement, a failed change without a savepoint) or a COMMIT
   * whose outcome is unknown (the connection broke). Only in mutation mode:
   * elsewhere a change that fails throws to its caller. For what was spent
   * outside the transaction on its behalf, such as a window quota's
   * reservation in the store (src/policy/enforcer.ts).
   */
  afterRollback(hook: () => Promise<unknown>): void {
    if (this.options.mode === "mutation" && this.slots && !this.closed) this.committed.rollbackHooks.push(hook);
  }

  /**
   * Ends the request transaction (request-commit.ts `endSession`). Calls
   * while one is under way share it (a stream's last event and its end both
   * finish the event's scope): two COMMITs and releases would reach the
   * request that had been handed the connection in between.
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
    await this.ending;
    if (!this.session || !this.slots) return;
    const session = await this.session.catch(() => undefined);
    this.session = undefined;
    if (!session) return;
    await endSession(session, this.changes, this.options.mode === "mutation", this.committed, this.options);
  }
}
