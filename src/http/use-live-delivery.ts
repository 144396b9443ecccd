import type { ServerResponse } from "node:http";
import {
  execute,
  print,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLSchema,
} from "graphql";
import type { Plugin } from "graphql-yoga";
import { countLiveResult, countLiveWrite } from "../infra/metrics.ts";
import { Delivery, streamOf } from "../modules/live/delivery.ts";
import { renewScope, type Context } from "../tenancy/context.ts";
import { documentScope } from "./response-cache-scope.ts";
import { bindLiveWriter, liveWriterOf, plainJson, sseWriter } from "./live-writers.ts";
import type { SseStreams } from "./sse-streams.ts";

/**
 * One execution per class of equal subscribers (docs/live-updates.md,
 * "Eighth round"). Every stream of a tenant that accepts an event is handed
 * the same Delivery (src/modules/live/delivery.ts); here each subscription
 * takes its events from its stream and, for a Delivery, runs its selection
 * only when no subscriber of its class has yet: the others get that
 * execution's result object (SSE and graphql-ws serialise it per
 * subscriber, as before). The class key holds everything the answer may
 * depend on besides the tenant's rows at the event (the Delivery is one
 * tenant's): the document (the same parsed object), operation name,
 * variables, kind of caller, identity provider and domain, the tenant's
 * features, and, when the selection can depend on them (`shareScope`), the
 * role and the caller. Each subscriber's access is still decided on its own
 * facts by the hub before it is handed the event (a removed member's stream
 * is closed, not served its class's result). A result with errors is never
 * shared, nor one whose executing subscriber's role changed meanwhile: the
 * others execute for themselves.
 */

/** What, beyond the tenant's rows, a subscription document's answer may depend on. */
export interface ShareScope {
  role: boolean;
  caller: boolean;
}

/**
 * Types whose rows PostgreSQL shows by the caller (RLS: `users` through
 * app_visible_user(user, tenant, caller)): a selection reaching one keeps
 * the caller in the key, though for the members of a tenant the rows are
 * the same (docs/response-cache.md, "Which entries roles share").
 * test/integration/live-caller-rows.test.ts holds it to the row-level
 * security policies: every table whose policy reads the caller is here.
 */
export const CALLER_ROWS: ReadonlySet<string> = new Set(["User"]);

/**
 * The response cache's rule (src/http/response-cache-scope.ts: the role for
 * a field with an @auth above VIEWER, DEPENDS_ON, an abstract type, anything
 * unsure; the caller for `viewer` and DEPENDS_ON "caller"), and, stricter,
 * the caller for a selection reaching CALLER_ROWS, an abstract type or a
 * field the schema does not know: one walk of the document (`documentScope`
 * with `callerRows`).
 */
export function shareScope(schema: GraphQLSchema, document: DocumentNode): ShareScope {
  const { role, caller } = documentScope(schema, print(document), CALLER_ROWS);
  return { role, caller };
}

type Results = AsyncIterableIterator<ExecutionResult>;

function isAsyncIterable(value: unknown): value is Results {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}

export function useLiveDelivery(schema: GraphQLSchema, sse: SseStreams): Plugin<Context> {
  const scopes = new WeakMap<DocumentNode, { scope: ShareScope; id: number }>();
  let documents = 0;
  const scopeOf = (document: DocumentNode) => {
    let entry = scopes.get(document);
    if (!entry) scopes.set(document, (entry = { scope: shareScope(schema, document), id: ++documents }));
    return entry;
  };
  /** Subscriptions over HTTP, by request: their SSE response gets its own writer once its processor is chosen (live-writers.ts). */
  const overHttp = new WeakMap<object, Context>();
  return {
    onSubscribe({ args: { contextValue }, subscribeFn, setSubscribeFn }) {
      const request = (contextValue as { request?: object }).request;
      if (request) overHttp.set(request, contextValue as Context);
      setSubscribeFn(async (args: ExecutionArgs) => {
        const result = await subscribeFn(args);
        const ctx = args.contextValue as Context;
        const stream = streamOf(ctx);
        if (!stream || !isAsyncIterable(result)) return result;
        const { scope, id } = scopeOf(args.document);
        const caller = ctx.apiKey ? `k:${scope.caller ? ctx.apiKey.id : ""}` : `u:${scope.caller ? (ctx.user?.id ?? "") : ""}`;
        // The placement too: streams opened on either side of a move read different databases (review).
        const placement = JSON.stringify(ctx.tenant?.placement ?? null);
        const fixed = [id, args.operationName ?? "", JSON.stringify(args.variableValues ?? null), caller, ctx.binding?.idpIssuer ?? "", ctx.binding?.domain ?? "", placement].join("\0");
        const keyOf = () => `${fixed}\0${scope.role ? `${ctx.role}:${ctx.isPlatformAdmin}` : ""}\0${ctx.tenant?.features.join(",") ?? ""}`;
        return sharedResults(args, result, stream, keyOf);
      });
    },
    // Yoga streams a subscription's results over HTTP only as SSE (multipart is off): a processor chosen for one is its SSE
    // processor, replaced by sse-streams.ts's (Yoga's framing, one keep-alive sweep for all streams).
    onResultProcess({ request, result, resultProcessor, setResultProcessor, serverContext }) {
      if (!resultProcessor || !isAsyncIterable(result)) return;
      const activity = { wrote: false };
      const res = (serverContext as { res?: ServerResponse } | undefined)?.res;
      setResultProcessor(sse.processor(activity, request.signal, res), "text/event-stream");
      const ctx = overHttp.get(request);
      if (ctx && res) bindLiveWriter(ctx, sseWriter(res, activity));
    },
  };
}

/**
 * A shared result's JSON, made once for the class: the transports serialise
 * a result with its own `stringify` when it has one (as graphql-jit's
 * results do: plainJson, Yoga's serialiser); not enumerable, so no
 * serialiser copies it.
 */
function serialisedOnce(result: ExecutionResult): ExecutionResult {
  let json: string | undefined;
  const stringify = (r: unknown) => (r === result ? (json ??= JSON.stringify(r)) : JSON.stringify(r));
  return Object.defineProperty(result, "stringify", { value: stringify, enumerable: false });
}

/**
 * The subscription's results from its stream: a Delivery's from its class's
 * one execution, anything else (a stream's coded end) executed for it.
 * `inner` is the executor's own iterator over the same stream, only ended.
 */
function sharedResults(args: ExecutionArgs, inner: Results, stream: AsyncIterator<unknown>, keyOf: () => string): Results {
  const ctx = args.contextValue as Context;
  // A fresh request scope for each execution (loaders, and a read transaction
  // on the live pool if a nested field needs one), ended once its result is
  // produced (use-request-transaction.ts); a subscriber served its class's
  // result reads nothing and needs none.
  const run = async (payload: unknown) => {
    renewScope(ctx);
    return execute({ ...args, rootValue: payload });
  };
  const own = async (payload: Delivery): Promise<ExecutionResult> => {
    const key = keyOf();
    const shared = payload.results.get(key);
    if (shared) {
      const result = await shared;
      if (result) {
        countLiveResult("shared");
        return result;
      }
    }
    countLiveResult("executed");
    if (shared || !payload.sharing) return run(payload);
    const role = ctx.role;
    const result = run(payload);
    payload.results.set(
      key,
      result.then(
        (r) => (!r.errors?.length && ctx.role === role ? serialisedOnce(r) : null),
        () => null,
      ),
    );
    return result;
  };
  // Results written by the stream's own writer (live-writers.ts) until one has to go through the pipeline (an error, or no writer yet): from then on all of them do, so they keep their order.
  let direct = true;
  let ended = false;
  const end = async () => {
    if (ended) return;
    ended = true;
    await inner.return?.();
    await stream.return?.();
  };
  return {
    async next() {
      for (;;) {
        if (ended) return { done: true, value: undefined };
        const item = await stream.next();
        if (item.done) {
          ended = true;
          return { done: true, value: undefined };
        }
        const value = item.value instanceof Delivery ? await own(item.value) : await run(item.value);
        const writer = direct && !value.errors && !value.extensions ? liveWriterOf(ctx) : undefined;
        if (writer) {
          // What the pipeline's onNext does once a result is produced (use-request-transaction.ts): the
          // execution's scope (a read transaction on the live pool, if a nested field needed one) ends
          // before the write, which waits for a consumer that does not read (review: a held live pool).
          await ctx.finish();
          if (await writer.write(plainJson(value))) {
            countLiveWrite("writer");
            continue;
          }
        }
        direct = false;
        countLiveWrite("pipeline");
        return { done: false, value };
      }
    },
    async return() {
      await end();
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
