import { createHash, timingSafeEqual } from "node:crypto";
import type { Plugin } from "graphql-yoga";
import type { Metrics } from "../infra/metrics.ts";

function tokenMatches(header: string | null, token: string): boolean {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  if (!match) return false;
  // Hash both sides: equal lengths for timingSafeEqual, no length leak.
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(match[1]!), digest(token));
}

function errorCodes(result: unknown): string[] {
  const results = Array.isArray(result) ? result : [result];
  const codes: string[] = [];
  for (const r of results) {
    const errors = (r as { errors?: readonly { extensions?: { code?: unknown } }[] } | null)?.errors;
    for (const e of errors ?? []) codes.push(typeof e.extensions?.code === "string" ? e.extensions.code : "INTERNAL_SERVER_ERROR");
  }
  return codes;
}

const UNMEASURED = new Set(["/metrics", "/healthz", "/readyz"]);

/**
 * GET /metrics (Prometheus text; Bearer METRICS_TOKEN when set), and the
 * per-request series: count, latency, error codes.
 */
export function useMetrics(
  metrics: Metrics,
  opts: { token?: string; tenantOf: (request: Request) => string | undefined },
): Plugin {
  const started = new WeakMap<Request, number>();
  return {
    async onRequest({ request, url, endResponse }) {
      if (url.pathname === "/metrics") {
        if (opts.token && !tokenMatches(request.headers.get("authorization"), opts.token)) {
          return endResponse(
            new Response(JSON.stringify({ error: "metrics token required" }), {
              status: 401,
              headers: { "content-type": "application/json", "WWW-Authenticate": "Bearer" },
            }),
          );
        }
        return endResponse(
          new Response(await metrics.registry.metrics(), { status: 200, headers: { "content-type": metrics.registry.contentType } }),
        );
      }
      if (!UNMEASURED.has(url.pathname)) started.set(request, performance.now());
    },
    onResultProcess({ request, result }) {
      if (!result || Symbol.asyncIterator in (result as object)) return;
      const tenant = opts.tenantOf(request);
      for (const code of errorCodes(result)) metrics.recordError(tenant, code);
    },
    onResponse({ request, response }) {
      const t0 = started.get(request);
      if (t0 === undefined) return;
      metrics.observeRequest(opts.tenantOf(request), response.status, (performance.now() - t0) / 1000);
    },
  };
}
