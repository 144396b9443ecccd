import type { Plugin } from "graphql-yoga";
import { jsonResponse } from "./json-response.ts";

export interface HealthChecksOptions {
  /** Readiness probes, by dependency name; `/readyz` is 503 when any fails. */
  probes: Record<string, () => Promise<boolean>>;
}

/** `/healthz` (the process answers) and `/readyz` (each dependency answers), before GraphQL. */
export function useHealthChecks(options: HealthChecksOptions): Plugin {
  const probes = Object.entries(options.probes);
  return {
    async onRequest({ url, endResponse }) {
      if (url.pathname === "/healthz") return endResponse(jsonResponse({ status: "ok" }, 200));
      if (url.pathname !== "/readyz") return;
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
