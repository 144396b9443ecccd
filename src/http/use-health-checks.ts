import type { Plugin } from "graphql-yoga";
import { jsonResponse } from "./json-response.ts";

export interface HealthChecksOptions {
  /** Readiness probes, by dependency name; `/readyz` is 503 when any fails. */
  probes: Record<string, () => Promise<boolean>>;
  /** True once a shutdown has begun: /readyz is 503 whatever the probes say. */
  draining?: () => boolean;
}

/** `/healthz` (the process answers) and `/readyz` (each dependency answers), before GraphQL. */
export function useHealthChecks(options: HealthChecksOptions): Plugin {
  const probes = Object.entries(options.probes);
  return {
    async onRequest({ url, endResponse }) {
      if (url.pathname === "/healthz") return endResponse(jsonResponse({ status: "ok" }, 200));
      if (url.pathname !== "/readyz") return;
      // Shutting down: out of rotation before anything else.
      if (options.draining?.()) return endResponse(jsonResponse({ status: "draining", dependencies: {} }, 503));
      const entries = await Promise.all(
        probes.map(async ([name, probe]) => {
          const ok = await probe().catch(() => false);
          return [name, ok ? "ok" : "down"] as const;
        }),
      );
      const ready = entries.every(([, s]) => s === "ok");
      endResponse(jsonResponse({ status: ready ? "ready" : "unavailable", dependencies: Object.fromEntries(entries) }, ready ? 200 : 503));
    },
  };
}
