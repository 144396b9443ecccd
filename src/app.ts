import type { GraphQLSchema } from "graphql";
import { createYoga, type YogaServerInstance } from "graphql-yoga";
import type pg from "pg";
import type { Config } from "./config.ts";
import { corsPolicy } from "./http/cors.ts";
import { graphiqlOptionsFor } from "./http/graphiql.ts";
import { useExport } from "./http/use-export.ts";
import { existingStateOf, stateOf } from "./http/request-state.ts";
import { useBodyLimit } from "./http/use-body-limit.ts";
import { useClientAddress } from "./http/use-client-address.ts";
import { useCsrfPrevention } from "./http/use-csrf-prevention.ts";
import { useHealthChecks } from "./http/use-health-checks.ts";
import { useInputGuard } from "./http/use-input-guard.ts";
import { useJit } from "./http/use-jit.ts";
import { useJitErrorLocations } from "./http/use-jit-error-locations.ts";
import { useJsonBody } from "./http/use-json-body.ts";
import { useClientGone } from "./http/use-client-gone.ts";
import { useLiveDelivery } from "./http/use-live-delivery.ts";
import { SseStreams } from "./http/sse-streams.ts";
import { useRequestTransaction } from "./http/use-request-transaction.ts";
import { useSqlPlans } from "./http/use-sql-plans.ts";
import { useResponseHeaders } from "./http/use-response-headers.ts";
import { useTenantResponseCache } from "./http/use-response-cache.ts";
import type { Logger } from "./infra/logger.ts";
import { useRequestLogging } from "./http/use-request-logging.ts";
import { Metrics } from "./infra/metrics.ts";
import { useMetrics } from "./http/use-metrics.ts";
import { useQueryLimits } from "./http/use-query-limits.ts";
import { maskError } from "./infra/unavailable.ts";
import { RequestCounter } from "./infra/request-counter.ts";
import { useRequestCounting } from "./http/use-request-counting.ts";
import { useInputErrors } from "./http/use-input-errors.ts";
import { useQueryTimeoutErrors } from "./http/use-query-timeout-errors.ts";
import { CursorCodec } from "./infra/cursor.ts";
import { InFlight } from "./infra/in-flight.ts";
import { RateLimiter } from "./infra/rate-limit.ts";
import { ApiKeyUse } from "./tenancy/last-used.ts";
import { schema as appSchema } from "./schema.ts";
import { buildContext, type Context, type ContextDeps } from "./tenancy/context.ts";
import { LiveHub } from "./modules/live/hub.ts";
import { TenantIdentityProviders } from "./tenancy/tenant-idp.ts";

/**
 * createApp(deps): the Yoga server and its plugins, with no knowledge of how
 * PostgreSQL and Redis were opened (src/server.ts does that), so tests build
 * the same app over their own databases. Each plugin lives in its own file
 * (src/http/use-*.ts, over the libraries of src/infra/ and src/policy/);
 * this is only the factory.
 */
export interface AppDeps extends Omit<ContextDeps, "cursors" | "rateLimiter" | "apiKeyUse"> {
  config: Pick<Config, "graphiql" | "introspection" | "maxBodyBytes" | "jwtSecret" | "production"> &
    Partial<Pick<Config, "sqlPlans" | "metricsToken" | "trustProxy" | "corsOrigins" | "jwtIssuer" | "jwksUrl">>;
  /** Prometheus registry of this app (a fresh one when omitted). */
  metrics?: Metrics;
  /** API request counting (src/infra/request-counter.ts); server.ts starts and stops its flusher. */
  requestCounter?: RequestCounter;
  /**
   * The app's fire-and-forget writes (API keys' last uses, response-cache
   * entries): server.ts waits for them at shutdown, a test before reading
   * what they wrote. A fresh one when omitted.
   */
  inFlight?: InFlight;
  /** PostgreSQL pools exposed as metrics, by name. */
  pools?: Record<string, pg.Pool>;
  logger: Logger;
  /** Readiness probes, by dependency name. */
  probes: Record<string, () => Promise<boolean>>;
  /** True once a shutdown has begun: /readyz answers 503 from then on (src/server.ts). */
  draining?: () => boolean;
  /** The schema served: src/schema.ts's when omitted (a test may serve one of its own over the same request path). */
  schema?: GraphQLSchema;
  /** The SSE streams of subscriptions and their keep-alive sweep (src/http/sse-streams.ts): 12 s, by a timer, when omitted; tests turn theirs by hand. */
  sseStreams?: SseStreams;
  /** Signs a demo token (acme OWNER) for GraphiQL's header template; only outside production with the demo tenants seeded. */
  demoToken?: () => Promise<string>;
}

export type App = YogaServerInstance<Record<string, unknown>, Context>;

export function createApp(appDeps: AppDeps): App {
  const { config, logger } = appDeps;
  // Without a hub from the caller (tests, scripts): an in-process one.
  appDeps.live ??= new LiveHub({ platform: appDeps.platform, events: appDeps.liveDb ?? appDeps.app, logger, now: appDeps.clock });
  appDeps.tenantIdps ??= new TenantIdentityProviders(appDeps.directory, {
    globalIssuer: config.jwtIssuer,
    globalJwksUrl: config.jwksUrl,
    allowHttp: !config.production,
  });
  const inFlight = appDeps.inFlight ?? new InFlight();
  const schema = appDeps.schema ?? appSchema;
  // Cursors are signed with a key of the server's secret, handed to the
  // pagination code through the context. What the app remembers between
  // requests (rate-limit fallback windows, last uses) is its own.
  const deps = {
    ...appDeps,
    cursors: new CursorCodec(config.jwtSecret),
    rateLimiter: new RateLimiter(appDeps.store, appDeps.clock),
    apiKeyUse: new ApiKeyUse(appDeps.platform, inFlight),
  };
  const tenantOf = (r: Request) => existingStateOf(r)?.tenantId;
  const metrics = deps.metrics ?? new Metrics({ pools: deps.pools, directory: deps.directory });
  return createYoga<Record<string, unknown>, Context>({
    schema,
    graphqlEndpoint: "/graphql",
    landingPage: false,
    graphiql: config.graphiql ? graphiqlOptionsFor(deps.demoToken) : false,
    // The offline GraphiQL bundle weighs ~80 MB of RSS once loaded: load it
    // on the first GraphiQL page, never when GRAPHIQL is off (production).
    renderGraphiQL: (opts) => import("@graphql-yoga/render-graphiql").then((m) => m.renderGraphiQL(opts)),
    // Never show internals: masked errors carry only INTERNAL_SERVER_ERROR,
    // except a dependency that is down: SERVICE_UNAVAILABLE, 503 + Retry-After.
    maskedErrors: { isDev: false, maskError },
    logging: {
      debug: (...a) => logger.debug(a.map(String).join(" ")),
      info: (...a) => logger.info(a.map(String).join(" ")),
      warn: (...a) => logger.warn(a.map(String).join(" ")),
      error: (...a) => logger.error(a.map(String).join(" ")),
    },
    batching: { limit: 5 },
    // No file uploads: multipart bodies are not GraphQL requests here.
    multipart: false,
    // The body limit is useBodyLimit's (413 by the declared length, a
    // chunked body read up to the limit). Yoga's own would wrap every body
    // again in a TransformStream, a new Request and an AbortSignal per
    // request, though Node's HTTP parser already frames a body by the
    // content-length it declares (docs/performance.md, "Yoga's body limit").
    maxRequestBodySize: false,
    cors: corsPolicy(config.corsOrigins ?? []),
    context: (initial) => {
      const state = stateOf(initial.request);
      return buildContext(deps, initial.request, state, { ip: state.ip ?? null }, initial);
    },
    plugins: [
      useJit(),
      useJitErrorLocations(),
      useResponseHeaders(),
      useClientAddress({ trustProxy: config.trustProxy }),
      useHealthChecks({ probes: deps.probes, draining: deps.draining }),
      useBodyLimit({ maxBodyBytes: config.maxBodyBytes }),
      useCsrfPrevention(),
      useJsonBody(),
      useInputGuard(),
      useInputErrors(),
      // Before the request's transaction: a request whose client has gone is not executed.
      useClientGone(),
      // A query the SQL planner may answer (and the response cache does not look up) is authorized with its planned read, one message: docs/request-path.md.
      // A subscription event's selection runs once per class of equal subscribers: docs/live-updates.md, "Eighth round".
      useLiveDelivery(schema, deps.sseStreams ?? new SseStreams(undefined, { logger })),
      useRequestTransaction({ idempotencySecret: config.jwtSecret, sqlPlans: config.sqlPlans ?? true, responseCache: !!deps.responseCache }),
      // Replaces the execute function of a planned query; the response cache (next) wraps it: docs/sql-plans.md.
      useSqlPlans({ enabled: config.sqlPlans ?? true, schema }),
      // After the request's authorization facts (and cache generation) were read: docs/response-cache.md.
      useTenantResponseCache({ store: deps.store, metrics, logger, schema, inFlight, options: deps.responseCache, databaseId: () => deps.directory.databaseId() }),
      useQueryTimeoutErrors(),
      useQueryLimits({ introspection: config.introspection, blockFieldSuggestions: config.production }),
      useMetrics(metrics, { token: config.metricsToken, tenantOf }),
      useRequestLogging(logger, existingStateOf),
      useRequestCounting(deps.requestCounter ?? new RequestCounter({ db: deps.platform, store: deps.store, logger, now: deps.clock }), tenantOf, logger),
      useExport(deps, { stateOf, logger }),
    ],
  });
}
