import type pg from "pg";
import type { LiveChange, LivePublisher } from "../infra/live-events.ts";
import { wroteAnything, type Session } from "./request-session.ts";

/** A mutation's COMMIT ended as a rollback: a statement of the transaction had failed. */
export class TransactionRolledBack extends Error {
  constructor() {
    super("the request's transaction was rolled back: a statement of it failed");
  }
}

/** Mutation mode: what waits for the COMMIT (live changes by tenant, afterCommit hooks). */
export interface Committed {
  live: [string, LiveChange[]][];
  hooks: (() => Promise<unknown>)[];
}

/**
 * Ends the request's transaction (TenantDb.finish). A read transaction:
 * commit and rollback are alike, and a failure is of no consequence. A
 * mutation: COMMIT, and throws when it failed (the connection broke:
 * whether it committed is unknown) or ended as a rollback
 * (`TransactionRolledBack`); once committed, runs `onCommitted` (only if it
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
    if (mutation && options.onCommitted) wrote = session.facts?.writable !== false && (await wroteAnything(session));
    const result = (await session.connection.query("COMMIT")) as pg.QueryResult;
    if (mutation && result.command === "ROLLBACK") failure = new TransactionRolledBack();
    session.connection.client.release();
  } catch (err) {
    failure = err;
    session.connection.client.release(err as Error);
  }
  if (!mutation) return;
  const { live, hooks } = committed;
  committed.live = [];
  committed.hooks = [];
  if (failure) throw failure;
  if (wrote) await options.onCommitted?.();
  if (options.publisher) {
    const byTenant = new Map<string, LiveChange[]>();
    for (const [tenantId, changes] of live) byTenant.set(tenantId, [...(byTenant.get(tenantId) ?? []), ...changes]);
    for (const [tenantId, changes] of byTenant) options.publisher.publish(tenantId, changes);
  }
  await Promise.allSettled(hooks.map((h) => h()));
}
