import type { Plugin } from "graphql-yoga";
import type { Logger } from "../infra/logger.ts";
import type { RequestCounter } from "../infra/request-counter.ts";

/**
 * Counts every tenant-scoped request once its response is ready (the tenant
 * is known once the context was built; see RequestState.tenantId).
 */
export function useRequestCounting(
  counter: RequestCounter,
  tenantOf: (request: Request) => string | undefined,
  logger?: Logger,
): Plugin {
  return {
    async onResponse({ request }) {
      const tenantId = tenantOf(request);
      if (!tenantId) return;
      // Awaited (one pipelined INCRBY) so a count is never behind its response; never fails the request.
      await counter.record(tenantId).catch((err: unknown) => logger?.warn({ err }, "request count failed"));
    },
  };
}
