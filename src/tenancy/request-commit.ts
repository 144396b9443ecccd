import pg from "pg";
import { namedStatement } from "../db/prepared-statements.ts";
import { hasSqlState } from "../errors.ts";
import { connectFor } from "../db/tier-pool.ts";
import type { LiveChange, LivePublisher } from "../infra/live-events.ts";
import { factsOf, gateOf, type BoundStatement, type RequestFacts } from "./request-facts.ts";
import { wroteAnything, type Session } from "./request-session.ts";
import { StatementThenCommit } from "./statement-then-commit.ts";
import { openStatements, type TransactionSettings } from "./transaction-settings.ts";

/** A mutation's COMMIT ended as a rollback: a statement of the transaction had failed. */
export class TransactionRolledBack extends Error {
  constructor() {
    super("the request's transaction was rolled back: a statement of it failed");
  }
}

/** invalid_sql_statement_name: "prepared statement ... does not exist". */
const UNDEFINED_PREPARED_STATEMENT = "26000";

/** Mutation mode: what waits for the COMMIT (live changes by tenant, afterCommit hooks). */
export interface Committed {
  live: [string, LiveChange[]][];
  hooks: (() => Promise<unknown>)[];
  /** Run when the transaction does not commit (rolled back, or its COMMIT's outcome unknown): TenantDb.afterRollback. */
  rollbackHooks: (() => Promise<unknown>)[];
  /** A change without a savepoint failed: the transaction ends with ROLLBACK, nothing waits (src/tenancy/mutation-changes.ts). */
  undone?: boolean;
}

/**
 * Ends the request's transaction (TenantDb.finish). A read transaction:
 * commit and rollback are alike, and a failure is of no consequence. A
 * mutation: COMMIT, and throws when it failed (the connection broke:
 * whether it committed is unknown) or ended as a rollback
 * (`TransactionRolledBack`, also when a change without a savepoint failed
 * and it was rolled back on purpose; then the rollback hooks run); once committed, runs `onCommitted` (only if it
 * wrote), publishes the live changes and runs the hooks (their failures are theirs).
 */
export async function endSession(
  session: Session,
  /** The mutation's savepoint changes, all settled. */
  changes: Promise<unknown>,
  mutation: boolean,
  committed: Committed,
  options: { onCommitted?: () => Promise<void>; publisher?: LivePublisher },
): Promise<void> {
  let failure: unknown;
  let wrote = false;
  try {
    await changes;
    // After every Prisma call in flight has settled (a late one must not
    // reach the connection once it is back in the pool), and through the
    // connection's queue: after every statement sent. COMMIT also ends an
    // aborted transaction (as a rollback).
    await session.idle;
    // The post-commit hook (a placed tenant's directory sync) runs only for
    // a mutation that wrote: never for one refused (TENANT_MOVING) or that
    // changed nothing, which would copy rows it did not change
    // (docs/placement.md, "Moving a tenant").
    if (mutation && options.onCommitted && !committed.undone) wrote = session.facts?.writable !== false && (await wroteAnything(session));
    const result = (await session.connection.query(committed.undone ? "ROLLBACK" : "COMMIT")) as pg.QueryResult;
    if (mutation && result.command === "ROLLBACK" && !committed.undone) failure = new TransactionRolledBack();
    session.connection.client.release();
  } catch (err) {
    failure = err;
    session.connection.client.release(err as Error);
  }
  if (!mutation) return;
  const { live, hooks, rollbackHooks } = committed;
  committed.live = [];
  committed.hooks = [];
  committed.rollbackHooks = [];
  if (committed.undone || failure) await Promise.allSettled(rollbackHooks.map((h) => h()));
  // Rolled back on purpose (or the connection broke on the way: rolled back
  // all the same): the failed field's error is the answer, and an answer
  // that carries data anyway (a resolver that caught its own change's
  // failure) must not be sent as committed (review-1330 F7): the caller
  // answers it as not committed (use-request-transaction.ts).
  if (committed.undone) throw new TransactionRolledBack();
  if (failure) throw failure;
  if (wrote) await options.onCommitted?.();
  if (options.publisher) {
    const byTenant = new Map<string, LiveChange[]>();
    for (const [tenantId, changes] of live) byTenant.set(tenantId, [...(byTenant.get(tenantId) ?? []), ...changes]);
    for (const [tenantId, changes] of byTenant) options.publisher.publish(tenantId, changes);
  }
  await Promise.allSettled(hooks.map((h) => h()));
}


/**
 * Runs the read transaction's last statement with its COMMIT (one message)
 * and gives the connection back once PostgreSQL has answered both. Any
 * failure ends the transaction as endSession would (rolled back, or the
 * connection discarded) and is thrown.
 */
export async function commitWith<T>(session: Session, text: string, values: unknown[]): Promise<T[]> {
  const { connection } = session;
  try {
    const results = await new Promise<pg.QueryResult[]>((resolve, reject) => {
      // Unnamed: statements of the transaction ran before it, so a name gone
      // from the connection (26000) could not be sent again alone.
      const query = new StatementThenCommit(text, values, (err, res) => (err ? reject(err) : resolve(res as pg.QueryResult[])));
      // Through the connection's queue: after every statement sent before it.
      connection.query(query).catch(reject);
    });
    if (results.length !== 2 || results[1]!.command !== "COMMIT") throw new Error("the statement's COMMIT did not run");
    connection.client.release();
    return results[0]!.rows as T[];
  } catch (err) {
    // The statement failed (the transaction is aborted, its COMMIT skipped):
    // ROLLBACK ends it; a connection that cannot is discarded.
    await connection.query("ROLLBACK").then(
      () => connection.client.release(),
      (e: unknown) => connection.client.release(e as Error),
    );
    throw err;
  }
}

/**
 * What `readInOneMessage` read: the facts, whether they set the planned
 * statement's gate (request-facts.ts `gatedFacts`; off: the statement did
 * nothing, its rows and failure mean nothing), and the statement's rows or
 * why it failed (a statement error after the facts, or the COMMIT's).
 */
export type ReadWithFacts<T> = { facts: RequestFacts; admitted: boolean } & ({ rows: T[] } | { failure: unknown });

/**
 * A whole read transaction in ONE message (docs/request-path.md, "One
 * message for a planned read"): BEGIN, the settings, the facts statement,
 * `text` with its values, COMMIT, under one Sync, on a connection of
 * `pool` taken for the tenant and given back once PostgreSQL has answered.
 * Nothing here decides whether the caller may have the rows: the caller
 * confirms the facts first (src/tenancy/authorize.ts) and throws the rows
 * away when they do not admit it.
 *
 * Any failure ends the transaction as `commitWith` does (ROLLBACK, or the
 * connection discarded). A failure in the opening or the facts rejects
 * with PostgreSQL's error, as the opening message of `openSession` would;
 * one after the facts resolves with the facts and the failure, so the
 * caller still confirms the facts before it answers anything.
 */
export async function readInOneMessage<T>(pool: pg.Pool, settings: TransactionSettings, facts: BoundStatement, text: string, values: unknown[]): Promise<ReadWithFacts<T>> {
  // Its turn among the tier's tenants (src/db/tier-pool.ts), as openSession's.
  const client = await connectFor(pool, settings.tenantId, settings.signal);
  const factsNamed = namedStatement(client, facts.text);
  const named = namedStatement(client, text);
  const opening = [...openStatements(settings), { ...facts, named: factsNamed }];
  const query = new StatementThenCommit(text, values, (err, res) => (err ? fail(err) : done(res as pg.QueryResult[])), opening, named);
  let done!: (results: pg.QueryResult[]) => void;
  let fail!: (err: Error) => void;
  const answered = new Promise<pg.QueryResult[]>((resolve, reject) => ((done = resolve), (fail = reject)));
  let results: pg.QueryResult[];
  try {
    // A Submittable: pg reports every failure, a broken client's too, through the callback.
    client.query(query as unknown as pg.QueryConfig);
    results = await answered;
    if (results.length !== opening.length + 2 || results.at(-1)!.command !== "COMMIT") throw new Error("the read's COMMIT did not run");
    factsNamed?.settle(true);
    named?.settle(true);
  } catch (err) {
    factsNamed?.settle(false);
    named?.settle(false);
    // A statement failed (the transaction is aborted, the rest skipped):
    // ROLLBACK ends it; a connection that cannot is discarded.
    await client.query("ROLLBACK").then(
      () => client.release(),
      (e: unknown) => client.release(e as Error),
    );
    // A statement the connection had prepared is gone (DEALLOCATE, DISCARD
    // ALL behind our back): forgotten above, so sent again with its Parse
    // (once: the second message parses every name it sends).
    const bound = [factsNamed, named].some((n) => n && !n.parse);
    if (bound && hasSqlState(err, UNDEFINED_PREPARED_STATEMENT)) return readInOneMessage(pool, settings, facts, text, values);
    const completed = query.completed();
    if (completed.length < opening.length) throw err;
    const read = completed.slice(0, opening.length);
    return { facts: factsOf(read), admitted: gateOf(read), failure: err };
  }
  client.release();
  const read = results.slice(0, opening.length);
  return { facts: factsOf(read), admitted: gateOf(read), rows: results[opening.length]!.rows as T[] };
}
