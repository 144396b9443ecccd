import { useResponseCache } from "@envelop/response-cache";
import { isObjectType, type GraphQLSchema } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { InFlight } from "../infra/in-flight.ts";
import type { Logger } from "../infra/logger.ts";
import type { Metrics } from "../infra/metrics.ts";
import {
  countLookup,
  MAX_TTL_SECONDS,
  RequestResponseCache,
  responseCacheKey,
  type CacheOutcome,
  type ResponseCacheOptions,
} from "../infra/response-cache.ts";
import type { Store } from "../infra/store.ts";
import { policyOf } from "../policy/field-policy.ts";
import type { Context } from "../tenancy/context.ts";
import { documentScopes } from "./response-cache-scope.ts";

/**
 * The tenant-aware response cache: @envelop/response-cache with our own key,
 * session, TTL and storage. It runs after `useRequestTransaction`, so an
 * answer is only served to a caller PostgreSQL has just admitted, and the
 * key holds the tenant's cache generation read with those facts. What is
 * cached, for how long, and why: docs/response-cache.md.
 */

export interface ResponseCacheDeps {
  store: Store;
  metrics: Metrics;
  logger: Logger;
  schema: GraphQLSchema;
  /** The app's fire-and-forget writes: the cache's stores are tracked there. */
  inFlight: InFlight;
  /** Undefined: the cache is off (every response BYPASS). */
  options?: ResponseCacheOptions;
  /**
   * The main database's identity (the directory's): part of every key, so a
   * deployment whose database is a copy of another's (same tenant ids, same
   * cache generations) sharing its Redis never reads the other's answers.
   */
  databaseId: () => Promise<string>;
}

/** The request asks for no cached answer (Cache-Control: no-cache or no-store): the cache is not looked up. */
export const noCache = (request: Request) => /\bno-(cache|store)\b/i.test(request.headers.get("cache-control") ?? "");

/** Schema coordinates never cached: every @crossTenant field, and the fields named above. */
function uncachedCoordinates(schema: GraphQLSchema): Record<string, number> {
  const ttl: Record<string, number> = { "Query.usage": 0, "Viewer.memberships": 0, "ApiKey.lastUsedAt": 0, "Query.__type": 0 };
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith("__")) continue;
    for (const field of Object.values(type.getFields())) {
      if (policyOf(field.extensions?.directives, type.extensions?.directives).crossTenant) ttl[`${type.name}.${field.name}`] = 0;
    }
  }
  return ttl;
}

/** JSON with sorted keys (the variables' order must not split entries). */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  if (value && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj)
      .sort()
      .filter((k) => obj[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson(obj[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

const requestOf = (ctx: Context) => (ctx as unknown as { request?: Request }).request;

export function useTenantResponseCache(deps: ResponseCacheDeps): Plugin<Context> {
  const outcomes = new WeakMap<Request, CacheOutcome[]>();
  const note = (ctx: Context, outcome: CacheOutcome) => {
    const request = requestOf(ctx);
    if (request) outcomes.set(request, [...(outcomes.get(request) ?? []), outcome]);
    const tenantId = ctx.tenant?.id;
    if (!tenantId || outcome === "BYPASS") return;
    if (outcome === "HIT") deps.metrics.cacheHit("response", tenantId);
    else deps.metrics.cacheMiss("response", tenantId);
    void deps.inFlight.track(countLookup(deps.store, tenantId, outcome === "HIT", ctx.now()));
  };
  const options = deps.options;
  const scopeOf = documentScopes(deps.schema);
  let databaseId: string | undefined;
  const maxTtl = options?.maxTtlSeconds ?? MAX_TTL_SECONDS;

  return {
    onPluginInit({ addPlugin }) {
      if (!options) return;
      addPlugin(
        // The envelop plugin is typed over the context alone; Yoga's adds the request.
        useResponseCache<Context>({
          enabled: (ctx) => {
            const request = requestOf(ctx);
            const on = ctx.operation === "query" && !!ctx.tenant && !!ctx.cacheFacts && !!request && !noCache(request);
            if (!on) note(ctx, "BYPASS");
            return on;
          },
          // The kind of caller and the generation: what every answer depends on.
          session: (ctx) => `${ctx.apiKey ? "key" : "user"}|${ctx.cacheFacts?.generation ?? ""}`,
          // The role and the caller where the document's answer depends on them (response-cache-scope.ts).
          buildResponseCacheKey: ({ documentString, variableValues, operationName, sessionId, context }) => {
            const ctx = context as Context;
            const scope = scopeOf(documentString);
            const role = scope.role ? `role:${ctx.role ?? ""}` : "any role";
            const caller = scope.caller ? (ctx.apiKey ? `key:${ctx.apiKey.id}` : `user:${ctx.user?.id ?? ""}`) : "";
            const key = (database: string) =>
              responseCacheKey(ctx.tenant!.id, [scope.digest, operationName ?? "", stableJson(variableValues ?? {}), role, sessionId ?? "", caller, database]);
            // The database's identity is read once; after that the key is built without a promise.
            return databaseId !== undefined ? key(databaseId) : deps.databaseId().then((id) => key((databaseId = id)));
          },
          cache: (ctx) => new RequestResponseCache(deps.store, deps.inFlight, (outcome) => note(ctx as Context, outcome), maxTtl),
          ttl: Infinity,
          ttlPerSchemaCoordinate: uncachedCoordinates(deps.schema),
          onTtl: ({ ttl, context }) => {
            if (ttl === 0) return 0;
            const plan = context.tenant?.plan;
            if (!plan) return 0;
            const seconds = context.cacheFacts?.ttl ?? options.ttlSeconds[plan];
            return seconds === 0 ? Math.min(ttl, maxTtl * 1000) : Math.min(ttl, seconds * 1000);
          },
          // The generation does it (docs/response-cache.md); no entity bookkeeping, no id fields added.
          invalidateViaMutation: false,
          idFields: [],
          shouldCacheResult: ({ result }) => !result.errors?.length,
          includeExtensionMetadata: false,
        }) as Plugin<Context>,
      );
    },
    onResponse({ request, response }) {
      if (!new URL(request.url).pathname.endsWith("/graphql")) return;
      const seen = outcomes.get(request) ?? [];
      // A batch: HIT when every operation was one, MISS when any was.
      const outcome: CacheOutcome = seen.length > 0 && seen.every((o) => o === "HIT") ? "HIT" : seen.includes("MISS") ? "MISS" : "BYPASS";
      response.headers.set("X-Cache", outcome);
    },
  };
}
