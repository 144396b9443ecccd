import type pg from "pg";
import { MoveAbandoned } from "./placement-move-errors.ts";

/**
 * The advisory locks of a move (docs/placement.md, "Moving a tenant"): the
 * write fence, held exclusively by the mover in the source database while
 * every mutation takes it shared with a try, and the mover's lock (one move
 * of a tenant at a time, main database). Both are session locks on the
 * move's own direct connections, never pooled ones.
 */

/** The advisory-lock key that fences a tenant's writes during a move (taken shared by every mutation). */
export const moveFenceSql = (tenantIdLiteral: string) => `hashtext('tenant-move:' || ${tenantIdLiteral})`;

/** The advisory-lock key (main database, session) that one move of a tenant holds from start to end. */
export const moveLockSql = (tenantIdLiteral: string) => `hashtext('tenant-mover:' || ${tenantIdLiteral})`;

/**
 * The fence is a session lock: it holds as long as its backend does. A query
 * on each fence connection answered by the backend that took the lock proves
 * it was held throughout (a terminated backend, a reset connection: the lock
 * is gone, writes may have committed after the snapshot).
 */
export async function checkFences(fences: pg.Client[], lost = "the move's write fence was lost"): Promise<void> {
  for (const fence of fences) {
    const pid = await fence.query<{ pid: number }>("SELECT pg_backend_pid() AS pid").then((r) => r.rows[0]?.pid, () => undefined);
    if (pid === undefined || pid !== (fence as unknown as { processID: number }).processID) throw new MoveAbandoned(lost);
  }
}
