import { vi } from "vitest";

/**
 * Waits until `check` holds (a throw counts as "not yet"), failing after
 * `timeoutMs` with `what`. For events of another process or connection
 * (a server's log line, a Redis back up, a commit seen elsewhere), where
 * there is no clock to inject and nothing to await; never for time itself.
 */
export function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  return vi.waitFor(
    async () => {
      if (!(await check())) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout: timeoutMs, interval: 25 },
  );
}

/**
 * The backends waiting for a lock the asking connection holds (a statement
 * a test made wait on its own lock). Asked with pg_blocking_pids, never
 * pg_stat_activity: inside the holder's transaction that view is a snapshot
 * taken at its first read, so a backend connected after it never shows
 * (test/integration/mutation-sql-failures.test.ts tells the story).
 */
export const BLOCKED_BY_ME = "SELECT pid FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY (pg_blocking_pids(pid))";
