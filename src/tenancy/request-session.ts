import type pg from "pg";
import { RequestConnection, type RequestSlot, type RequestSlots } from "../db/request-slots.ts";
import { connectFor } from "../db/tier-pool.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";
import { admissionChanged, factsOf, factsSql, sameAdmission, type RequestFacts } from "./request-facts.ts";
import type { ScopedClient, ScopedTx } from "./scoped-client.ts";
import { openSql, type TransactionSettings } from "./transaction-settings.ts";

/**
 * The request's transaction (docs/request-path.md): a plain pooled `pg`
 * connection of the tenant's tier pool, opened with its settings (and the
 * facts) in one round-trip. Hand-written SQL runs on it directly; Prisma's
 * queries reach it through a request slot borrowed while they are in
 * flight (src/db/request-slots.ts).
 */
export interface Session {
  connection: RequestConnection;
  facts?: RequestFacts;
  /** The borrowed slot and its scoped client, shared by the calls in flight; undefined when none is. */
  lease?: { ready: Promise<{ slot: RequestSlot; scoped: ScopedClient }>; calls: number };
  /** Settles when no Prisma call is in flight. */
  idle: Promise<void>;
  settleIdle?: () => void;
}

/**
 * Opens the request's transaction on a connection of `slots`' pool: BEGIN,
 * the settings and (with `authorization`) the facts, one message.
 * `admitted`: the facts that admitted the request in an earlier transaction
 * of it (one ended by what was taken for its last statement; tenant-db.ts):
 * this one's must say the same, or the request is refused, so what it reads
 * is read in a snapshot whose facts admit it, as in the first.
 */
export async function openSession(slots: RequestSlots, settings: TransactionSettings, admitted?: RequestFacts): Promise<Session> {
  let connection: pg.PoolClient | undefined;
  let facts: RequestFacts | undefined;
  try {
    const factsStatement = factsSql(settings);
    // Its turn among the tier's tenants (src/db/tier-pool.ts), not behind another tenant's backlog.
    connection = await connectFor(slots.pool, settings.tenantId, settings.signal);
    const results = (await connection.query(factsStatement ? `${openSql(settings)}; ${factsStatement}` : openSql(settings))) as unknown as pg.QueryResult[];
    if (factsStatement) facts = factsOf(results);
    if (admitted && facts && !sameAdmission(admitted, facts)) throw admissionChanged();
  } catch (err) {
    connection?.release(err as Error);
    throw err;
  }
  return { connection: new RequestConnection(connection), facts, idle: Promise.resolve() };
}

/**
 * Runs a Prisma call of the request on a borrowed slot: the calls in
 * flight together (those of one tick, which Prisma batches) share one;
 * the last to settle gives it back. `scopedOn` makes the slot's scoped client.
 */
export async function withSlot<T>(slots: RequestSlots, session: Session, scopedOn: (prisma: PrismaClient) => ScopedClient, fn: (tx: ScopedTx) => Promise<T>): Promise<T> {
  let lease = session.lease;
  if (!lease) {
    session.idle = new Promise<void>((resolve) => (session.settleIdle = resolve));
    const ready = slots.acquire().then((slot) => {
      slot.pool.connection = session.connection;
      return { slot, scoped: scopedOn(slot.prisma) };
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

/** Whether the request transaction wrote (was given a transaction id); an aborted one did not. */
export async function wroteAnything(session: Session): Promise<boolean> {
  try {
    const result = (await session.connection.query("SELECT pg_current_xact_id_if_assigned() IS NOT NULL AS wrote")) as pg.QueryResult<{ wrote: boolean }>;
    return result.rows[0]?.wrote === true;
  } catch {
    return false;
  }
}
