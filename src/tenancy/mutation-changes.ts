import { Kind, type DocumentNode, type FragmentDefinitionNode, type OperationDefinitionNode, type SelectionSetNode } from "graphql";
import { TransactionRolledBack, type Committed } from "./request-commit.ts";
import type { ScopedTx } from "./scoped-client.ts";

/**
 * Whether a mutation's changes need savepoints (docs/live-updates.md, "The
 * cost of a write").
 *
 * GraphQL runs a mutation's root fields one after the other, and a failed
 * field must not undo the fields before it: so each change
 * (`TenantDb.transaction`) is a savepoint of the request's transaction,
 * two round trips of its own (SAVEPOINT, RELEASE) while the tier pool's
 * connection is held. An operation with ONE root field has nothing before
 * it to keep: when its change fails, the whole request transaction is
 * rolled back instead (`runWithoutSavepoint`), which writes exactly what the
 * savepoint wrote, nothing. An `Idempotency-Key` keeps the savepoints: its
 * claimed row and the stored answer (a coded refusal is kept and replayed)
 * must commit although the change failed (src/http/idempotency.ts).
 */

/** Operations whose changes run without savepoints (set before their TenantDb is made). */
const oneChange = new WeakSet<object>();

/** Decides it for `ctx`'s operation, once, before anything is resolved. */
export function decideSavepoints(ctx: object, document: DocumentNode, op: OperationDefinitionNode | null | undefined, idempotencyKey: string | null): void {
  if (op?.operation === "mutation" && idempotencyKey === null && rootFieldCount(document, op.selectionSet) === 1) oneChange.add(ctx);
}

/** Whether `ctx`'s mutation changes need their savepoints (the default: yes). */
export const needsSavepoints = (ctx: object): boolean => !oneChange.has(ctx);

/**
 * The root fields an operation can run, counted high where in doubt: a
 * field under @skip/@include counts, a fragment spread twice counts twice,
 * an unknown or cyclic fragment (refused by validation) counts as many.
 */
export function rootFieldCount(document: DocumentNode, selectionSet: SelectionSetNode, within: string[] = []): number {
  let n = 0;
  for (const s of selectionSet.selections) {
    if (s.kind === Kind.FIELD) n++;
    else if (s.kind === Kind.INLINE_FRAGMENT) n += rootFieldCount(document, s.selectionSet, within);
    else {
      const name = s.name.value;
      const fragment = document.definitions.find((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION && d.name.value === name);
      n += !fragment || within.includes(name) ? Infinity : rootFieldCount(document, fragment.selectionSet, [...within, name]);
    }
  }
  return n;
}

/**
 * A change run on the request's transaction itself, without a savepoint:
 * when it fails, the transaction is marked to end with ROLLBACK instead of
 * COMMIT (its writes so far, a failed statement's abort, the live changes
 * and hooks waiting for the COMMIT all go). Every service rethrows a failed
 * change's error, so the field fails with it; a later change of the same
 * operation is refused rather than written into a transaction that will be
 * rolled back.
 */
export async function runWithoutSavepoint<T>(tx: ScopedTx, track: (tx: object) => void, committed: Committed, fn: (tx: ScopedTx) => Promise<T>): Promise<T> {
  if (committed.undone) throw new TransactionRolledBack();
  track(tx);
  try {
    return await fn(tx);
  } catch (err) {
    committed.undone = true;
    throw err;
  }
}
