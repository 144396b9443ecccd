import { requestIdFrom, type RequestState } from "../tenancy/context.ts";

/**
 * Per-request state shared by the HTTP plugins (request id, client address,
 * tenant, rate limit), kept in a WeakMap keyed by the request rather than on
 * the GraphQL context, so plugins that run before the context exists (and
 * `/export`, which has no GraphQL context) see the same state.
 */
const requestStates = new WeakMap<Request, RequestState>();

/** The request's state, created on first use. */
export function stateOf(request: Request): RequestState {
  let state = requestStates.get(request);
  if (!state) {
    state = { requestId: requestIdFrom(request) };
    requestStates.set(request, state);
  }
  return state;
}

/** The request's state if any plugin created it. */
export const existingStateOf = (request: Request): RequestState | undefined => requestStates.get(request);

/** Carries the state over to a request that replaces `original` (a re-read body). */
export function moveState(original: Request, replacement: Request): void {
  requestStates.set(replacement, stateOf(original));
}
