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
