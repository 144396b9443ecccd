import { renderGraphiQL } from "@graphql-yoga/render-graphiql";
import { getOperationAST } from "graphql";
import { createYoga, type Plugin, type YogaServerInstance } from "graphql-yoga";
import type { Config } from "./config.ts";
import type { Logger } from "./infra/logger.ts";
import { schema } from "./schema/index.ts";
import { setCursorSecret } from "./schema/cursor.ts";
import { buildContext, requestIdFrom, type Context, type ContextDeps, type RequestState } from "./tenancy/context.ts";
import { graphiqlOptions } from "./graphiql.ts";

/**
 * createApp(deps): the Yoga server and its plugins, with no knowledge of how
 * PostgreSQL and Redis were opened (src/server.ts does that), so tests build
 * the same app over their own databases.
 */
export interface AppDeps extends ContextDeps {
  config: Pick<Config, "graphiql" | "introspection" | "maxBodyBytes" | "jwtSecret" | "production">;
  logger: Logger;
  /** Readiness probes, by dependency name. */
  probes: Record<string, () => Promise<boolean>>;
}

export type App = YogaServerInstance<Record<string, unknown>, Context>;

const requestStates = new WeakMap<Request, RequestState>();

function stateOf(request: Request): RequestState {
  let state = requestStates.get(request);
  if (!state) {
    state = { requestId: requestIdFrom(request) };
    requestStates.set(request, state);
  }
  return state;
}

const json = (body: unknown, status: number) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

/** /healthz, /readyz and request limits, answered before GraphQL. */
function useHttpSurface(deps: AppDeps): Plugin {
  return {
    async onRequest({ request, url, endResponse }) {
      stateOf(request);
      if (url.pathname === "/healthz") return endResponse(json({ status: "ok" }, 200));
      if (url.pathname === "/readyz") {
        const entries = await Promise.all(
          Object.entries(deps.probes).map(async ([name, probe]) => {
            const ok = await probe().catch(() => false);
            return [name, ok ? "ok" : "down"] as const;
          }),
        );
        const ready = entries.every(([, s]) => s === "ok");
        return endResponse(json({ status: ready ? "ready" : "unavailable", dependencies: Object.fromEntries(entries) }, ready ? 200 : 503));
      }
      const length = Number(request.headers.get("content-length") ?? "0");
      if (length > deps.config.maxBodyBytes) {
        return endResponse(json({ errors: [{ message: "Request body too large", extensions: { code: "PAYLOAD_TOO_LARGE" } }] }, 413));
      }
    },
    onResponse({ request, response }) {
      const state = requestStates.get(request);
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

/** Ends the request's read transaction when execution is done. */
function useRequestTransaction(): Plugin<Context> {
  return {
    onExecute({ args }) {
      const ctx = args.contextValue as Context;
      const op = getOperationAST(args.document, args.operationName ?? undefined);
      ctx.operation = op?.operation ?? "query";
      return {
        async onExecuteDone() {
          await ctx.finish();
        },
      };
    },
  };
}

export function createApp(deps: AppDeps): App {
  setCursorSecret(deps.config.jwtSecret);
  return createYoga<Record<string, unknown>, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    landingPage: false,
    graphiql: deps.config.graphiql ? graphiqlOptions : false,
    renderGraphiQL,
    // Never show internals: masked errors carry only INTERNAL_SERVER_ERROR.
    maskedErrors: { isDev: false },
    logging: {
      debug: (...a) => deps.logger.debug(a.map(String).join(" ")),
      info: (...a) => deps.logger.info(a.map(String).join(" ")),
      warn: (...a) => deps.logger.warn(a.map(String).join(" ")),
      error: (...a) => deps.logger.error(a.map(String).join(" ")),
    },
    batching: { limit: 5 },
    context: async ({ request }) => {
      const state = stateOf(request);
      const forwarded = request.headers.get("x-forwarded-for")?.split(",")[0]?.trim();
      return buildContext(deps, request, state, { ip: forwarded || null });
    },
    plugins: [useHttpSurface(deps), useRequestTransaction()],
  });
}
