import { GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Logger } from "../infra/logger.ts";
import { buildContext, type Context, type ContextDeps, type RequestState } from "../tenancy/context.ts";
import { authorizeExport, exportStream, NDJSON } from "./export.ts";

function errorResponse(err: unknown, logger?: Logger): Response {
  let status = 500;
  let body: { message: string; extensions: Record<string, unknown> } = {
    message: "Unexpected error.",
    extensions: { code: "INTERNAL_SERVER_ERROR" },
  };
  if (err instanceof GraphQLError && typeof err.extensions.code === "string") {
    const { http, ...extensions } = err.extensions as { http?: { status?: number; headers?: Record<string, string> } };
    const byCode: Record<string, number> = { UNAUTHENTICATED: 401, FORBIDDEN: 403, NOT_FOUND: 404, BAD_USER_INPUT: 400 };
    status = http?.status ?? byCode[err.extensions.code] ?? 403;
    body = { message: err.message, extensions };
    return new Response(JSON.stringify({ errors: [body] }), {
      status,
      headers: { "content-type": "application/json", ...(http?.headers ?? {}) },
    });
  }
  logger?.error({ err }, "export request failed");
  return new Response(JSON.stringify({ errors: [body] }), { status, headers: { "content-type": "application/json" } });
}

export interface ExportOptions {
  stateOf: (request: Request) => RequestState;
  logger?: Logger;
  /** @default 1000 */
  batchSize?: number;
}

export function useExport(deps: ContextDeps, opts: ExportOptions): Plugin {
  return {
    async onRequest({ request, url, endResponse }) {
      if (url.pathname !== "/export") return;
      if (request.method !== "GET") {
        return endResponse(new Response(null, { status: 405, headers: { allow: "GET" } }));
      }
      let ctx: Context | undefined;
      try {
        const state = opts.stateOf(request);
        ctx = await buildContext(deps, request, state, { ip: state.ip ?? null });
        // A write (the audit entry) and short transactions: confirmed like a mutation.
        ctx.operation = "mutation";
        await ctx.authorize();
        const { tenant, run } = await authorizeExport(ctx, url);
        // The audit entry is committed before any row is streamed.
        await ctx.finish();
        const stream = exportStream(run, tenant.id, opts.batchSize ?? 1000, opts.logger);
        endResponse(
          new Response(stream, {
            status: 200,
            headers: {
              "content-type": NDJSON,
              "content-disposition": `attachment; filename="${tenant.slug}-export.ndjson"`,
              "cache-control": "no-store",
            },
          }),
        );
      } catch (err) {
        await ctx?.finish().catch(() => undefined);
        endResponse(errorResponse(err, opts.logger));
      }
    },
  };
}
