import { GraphQLError, getOperationAST, type ExecutionResult } from "graphql";
import { useGraphQlJit } from "@envelop/graphql-jit";
import { compileQuery, isCompiledQuery } from "graphql-jit";
import { createYoga, type Plugin, type YogaServerInstance } from "graphql-yoga";
import type { Config } from "./config.ts";
import type { Logger } from "./infra/logger.ts";
import { schema } from "./schema/index.ts";
import { setCursorSecret } from "./schema/cursor.ts";
import { buildContext, requestIdFrom, type Context, type ContextDeps, type RequestState } from "./tenancy/context.ts";
import { graphiqlOptions } from "./graphiql.ts";
import type pg from "pg";
import { useExport } from "./http/export.ts";
import { useRequestLogging } from "./infra/logger.ts";
import { Metrics, useMetrics } from "./infra/metrics.ts";
import { RequestCounter, useRequestCounting } from "./infra/request-counter.ts";
import { useQueryLimits } from "./infra/query-limits.ts";
import { useQueryTimeoutErrors } from "./policy/query-timeout.ts";

/**
 * createApp(deps): the Yoga server and its plugins, with no knowledge of how
 * PostgreSQL and Redis were opened (src/server.ts does that), so tests build
 * the same app over their own databases.
 */
export interface AppDeps extends ContextDeps {
  config: Pick<Config, "graphiql" | "introspection" | "maxBodyBytes" | "jwtSecret" | "production"> & Partial<Pick<Config, "metricsToken">>;
  /** Prometheus registry of this app (a fresh one when omitted). */
  metrics?: Metrics;
  /** API request counting (src/infra/request-counter.ts); server.ts starts and stops its flusher. */
  requestCounter?: RequestCounter;
  /** PostgreSQL pools exposed as metrics, by name. */
  pools?: Record<string, pg.Pool>;
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

/** The whole body, or null (and the stream cancelled) once it exceeds `max` bytes. */
async function readLimited(stream: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array<ArrayBuffer> | null> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    body.set(c, offset);
    offset += c.byteLength;
  }
  return body;
}

/** /healthz, /readyz and request limits, answered before GraphQL. */
function useHttpSurface(deps: AppDeps): Plugin {
  return {
    async onRequest({ request, url, endResponse, setRequest, fetchAPI }) {
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
      const tooLarge = () =>
        endResponse(json({ errors: [{ message: "Request body too large", extensions: { code: "PAYLOAD_TOO_LARGE" } }] }, 413));
      const declared = request.headers.get("content-length");
      if (declared !== null) {
        if (Number(declared) > deps.config.maxBodyBytes) return tooLarge();
      } else if (request.body && request.method !== "GET" && request.method !== "HEAD") {
        // A chunked body declares no length: read it, but never past the limit.
        const body = await readLimited(request.body, deps.config.maxBodyBytes);
        if (!body) return tooLarge();
        const replacement = new fetchAPI.Request(request.url, { method: request.method, headers: request.headers, body });
        requestStates.set(replacement, stateOf(request));
        setRequest(replacement);
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

/**
 * graphql-jit compiles an operation's selection into a function (and its
 * result into a specialised JSON serialiser): the dashboard costs about a
 * quarter less CPU than with Yoga's interpreter (docs/performance.md). Only
 * a document executed before is compiled: compiling costs milliseconds, so
 * a client sending a new document every time stays on the interpreter.
 * Yoga's parse cache hands out the same document object for the same text,
 * which is what the count is keyed by; documents reach execution only after
 * the query limits, so what is compiled is bounded.
 */
function useJit() {
  const seen = new WeakMap<object, number>();
  return useGraphQlJit(
    {},
    {
      enableIf: ({ schema, document, operationName }) => {
        const n = (seen.get(document) ?? 0) + 1;
        if (n === 2 && !isCompiledQuery(compileQuery(schema, document, operationName ?? undefined))) {
          // Not compilable (graphql-jit would answer with its compile errors
          // from then on): this document stays on the interpreter.
          seen.set(document, -Infinity);
          return false;
        }
        seen.set(document, n);
        return n >= 2;
      },
    },
  );
}

/** The offset in `body` of a 1-based line and column. */
function offsetOf(body: string, line: number, column: number): number {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    const next = body.indexOf("\n", offset);
    if (next < 0) break;
    offset = next + 1;
  }
  return offset + column - 1;
}

/**
 * graphql-jit reports a resolver's error with its path and locations but
 * not its AST nodes, and the error masking rebuilds errors from nodes, so
 * `locations` would be lost. Rebuilt here from the document's source (before
 * the masking, which runs after user plugins), so a compiled execution
 * answers exactly as the interpreter does.
 */
function useJitErrorLocations(): Plugin<Context> {
  return {
    onExecute({ args }) {
      const source = args.document.loc?.source;
      return {
        onExecuteDone({ result, setResult }) {
          if (!source || Symbol.asyncIterator in (result as object)) return;
          const { errors } = result as ExecutionResult;
          if (!errors?.some((e) => !e.nodes && e.locations?.length)) return;
          const located = errors.map((e) => {
            if (e.nodes || !e.locations?.length) return e;
            const original = e.originalError;
            return new GraphQLError(original?.message ?? e.message, {
              source,
              positions: e.locations.map((l) => offsetOf(source.body, l.line, l.column)),
              path: e.path,
              originalError: original,
              extensions: original instanceof GraphQLError ? original.extensions : e.extensions,
            });
          });
          setResult({ ...(result as ExecutionResult), errors: located });
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
    // The offline GraphiQL bundle weighs ~80 MB of RSS once loaded: load it
    // on the first GraphiQL page, never when GRAPHIQL is off (production).
    renderGraphiQL: (opts) => import("@graphql-yoga/render-graphiql").then((m) => m.renderGraphiQL(opts)),
    // Never show internals: masked errors carry only INTERNAL_SERVER_ERROR.
    maskedErrors: { isDev: false },
    logging: {
      debug: (...a) => deps.logger.debug(a.map(String).join(" ")),
      info: (...a) => deps.logger.info(a.map(String).join(" ")),
      warn: (...a) => deps.logger.warn(a.map(String).join(" ")),
      error: (...a) => deps.logger.error(a.map(String).join(" ")),
    },
    batching: { limit: 5 },
    context: async (initial) => {
      const { request } = initial;
      const state = stateOf(request);
      const forwarded = request.headers.get("x-forwarded-for")?.split(",")[0]?.trim();
      return buildContext(deps, request, state, { ip: forwarded || null }, initial);
    },
    plugins: [useJit(), useJitErrorLocations(), useHttpSurface(deps), useRequestTransaction(), useQueryTimeoutErrors(), useQueryLimits({ introspection: deps.config.introspection, blockFieldSuggestions: deps.config.production }),
      useMetrics(deps.metrics ?? new Metrics({ pools: deps.pools, directory: deps.directory }), { token: deps.config.metricsToken, tenantOf: (r) => requestStates.get(r)?.tenantId }),
      useRequestLogging(deps.logger, (r) => requestStates.get(r)),
      useRequestCounting(deps.requestCounter ?? new RequestCounter({ db: deps.platform, store: deps.store, logger: deps.logger }), (r) => requestStates.get(r)?.tenantId, deps.logger),
      useExport(deps, { stateOf, logger: deps.logger })],
  });
}
