import type { Plugin } from "graphql-yoga";
import { existingStateOf, stateOf } from "./request-state.ts";

/**
 * Creates the request's state as it arrives (its request id) and reports it
 * on the way out: `X-Request-ID` on every response, `X-Tenant-ID` and the
 * `X-RateLimit-*` headers once the context has resolved them.
 */
export function useResponseHeaders(): Plugin {
  return {
    onRequest({ request }) {
      stateOf(request);
    },
    onResponse({ request, response }) {
      const state = existingStateOf(request);
      if (!state) return;
      response.headers.set("X-Request-ID", state.requestId);
      if (state.tenantId) response.headers.set("X-Tenant-ID", state.tenantId);
      if (state.rateLimit && state.rateLimit.limit >= 0) {
        response.headers.set("X-RateLimit-Limit", String(state.rateLimit.limit));
        response.headers.set("X-RateLimit-Remaining", String(state.rateLimit.remaining));
        response.headers.set("X-RateLimit-Reset", String(state.rateLimit.reset));
      }
    },
  };
}
