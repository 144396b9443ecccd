import type { Plugin } from "graphql-yoga";
import { ClientGone } from "../db/time-share.ts";

/**
 * A request whose client has gone before its execution starts is not
 * executed (review F4, docs/request-path.md "A client that goes away"):
 * Yoga's `request.signal` is aborted once the HTTP response closed before
 * it was sent (a client that timed out while the context was being built,
 * behind a slow Redis or a queue of its own). Before the request's
 * transaction is opened (`useRequestTransaction`, next), so no connection
 * is taken and nothing of it runs. A request already executing runs on (a
 * mutation that started commits).
 */
export function useClientGone(): Plugin {
  return {
    onExecute({ args }) {
      const request = (args.contextValue as { request?: Request }).request;
      if (request?.signal?.aborted) throw new ClientGone();
    },
  };
}
