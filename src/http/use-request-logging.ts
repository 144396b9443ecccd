import { getOperationAST } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Logger, RequestLogInfo } from "../infra/logger.ts";

/**
 * One log line per request: request id, tenant id, operation name, method,
 * path, status and duration. Built from a whitelist of fields, so headers,
 * tokens, API keys, query strings and variables never reach the log.
 */
export function useRequestLogging(logger: Logger, infoOf: (request: Request) => RequestLogInfo | undefined): Plugin {
  const started = new WeakMap<Request, { t0: number; path: string }>();
  const operations = new WeakMap<Request, string>();
  return {
    onRequest({ request, url }) {
      started.set(request, { t0: performance.now(), path: url.pathname });
    },
    onParams({ params, request }) {
      if (typeof params?.operationName === "string") operations.set(request, params.operationName.slice(0, 100));
    },
    // An operation named only in the document (no operationName param).
    onExecute({ args }) {
      const request = (args.contextValue as { request?: Request }).request;
      if (!request || operations.has(request)) return;
      const name = getOperationAST(args.document, args.operationName ?? undefined)?.name?.value;
      if (name) operations.set(request, name.slice(0, 100));
    },
    onResponse({ request, response }) {
      const start = started.get(request);
      if (!start || start.path === "/healthz" || start.path === "/readyz" || start.path === "/metrics") return;
      const info = infoOf(request);
      const status = response.status;
      const line = {
        requestId: info?.requestId,
        tenantId: info?.tenantId ?? null,
        operationName: operations.get(request) ?? null,
        method: request.method,
        path: start.path,
        status,
        durationMs: Math.round((performance.now() - start.t0) * 100) / 100,
      };
      if (status >= 500) logger.error(line, "request");
      else logger.info(line, "request");
    },
  };
}
