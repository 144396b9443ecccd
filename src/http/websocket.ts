import type { IncomingMessage, Server } from "node:http";
import { GraphQLError, type DocumentNode, type ExecutionArgs, type GraphQLSchema } from "graphql";
import { CloseCode, type OperationResult } from "graphql-ws";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer, type WebSocket } from "ws";
import type { Logger } from "../infra/logger.ts";
import { startKeepAlive } from "./ws-keepalive.ts";
import { bindLiveWriter, wsWriter } from "./live-writers.ts";

/**
 * GraphQL over WebSocket (`graphql-ws`, subprotocol `graphql-transport-ws`)
 * on the HTTP server's own port and path (/graphql), with Yoga's envelop:
 * the same context builder (credentials, tenant resolution, rate limit),
 * query limits, error masking and policy as HTTP.
 *
 * Browsers cannot set headers on a WebSocket, so the credentials travel in
 * the `connection_init` payload: `authorization`, `x-tenant-id`,
 * `x-api-key` (any letter case). They are checked at `connection_init`
 * (refused: close 4403 with the error code as reason) and again for every
 * `subscribe`, which also counts against the tenant's rate limit like an
 * HTTP request.
 */

const CREDENTIAL_HEADERS = ["authorization", "x-tenant-id", "x-api-key"] as const;
/** Taken from the upgrade request: where the client is and what it asked for. */
const UPGRADE_HEADERS = ["host", "x-forwarded-for", "x-request-id", "user-agent"] as const;

export interface WebSocketOptions {
  logger: Logger;
  /** Server ping period (ms); a client that does not answer within one period is cut. */
  keepAliveMs?: number;
}

type Extra = { socket: WebSocket; request: IncomingMessage };

/** A Fetch Request carrying the connection's credentials, for the shared context builder. */
export function requestFor(upgrade: IncomingMessage, params: Record<string, unknown> | undefined): Request {
  const headers = new Headers();
  for (const name of UPGRADE_HEADERS) {
    const value = upgrade.headers[name];
    if (typeof value === "string") headers.set(name, value);
  }
  const given = new Map(Object.entries(params ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  for (const name of CREDENTIAL_HEADERS) {
    const value = given.get(name);
    if (typeof value === "string" && value.length <= 8192) headers.set(name, value);
  }
  return new Request(`http://${headers.get("host") ?? "localhost"}/graphql`, { headers });
}

/** Errors as a client may see them: Yoga's internal `extensions.http` (status, headers) removed. */
function withoutInternals<T extends { extensions?: Record<string, unknown> }>(error: T): T {
  if (!error.extensions || !("http" in error.extensions)) return error;
  const { http: _http, ...extensions } = error.extensions;
  return { ...(error instanceof GraphQLError ? error.toJSON() : error), extensions } as T;
}

const closeReason = (err: unknown) => {
  const code = err instanceof GraphQLError && typeof err.extensions.code === "string" ? err.extensions.code : "INTERNAL_SERVER_ERROR";
  const message = err instanceof GraphQLError && code !== "INTERNAL_SERVER_ERROR" ? err.message : "Internal server error";
  // A close reason is at most 123 bytes.
  return Buffer.from(`${code}: ${message}`).subarray(0, 123).toString();
};

/** The part of the Yoga app the WebSocket server uses: its envelop (src/app.ts). */
type Enveloped = ReturnType<EnvelopedApp["getEnveloped"]>;

interface EnvelopedApp {
  getEnveloped(initial: Record<string, unknown>): {
    schema: GraphQLSchema;
    execute: (args: ExecutionArgs) => OperationResult;
    subscribe: (args: ExecutionArgs) => OperationResult;
    parse: (source: string) => DocumentNode;
    validate: (schema: GraphQLSchema, document: DocumentNode) => readonly GraphQLError[];
    contextFactory: () => unknown;
  };
}

export function attachWebSocket(server: Server, app: EnvelopedApp, options: WebSocketOptions) {
  const wss = new WebSocketServer({ server, path: "/graphql" });
  const contextFor = async (extra: Extra, params: Record<string, unknown> | undefined, payload?: unknown) => {
    const request = requestFor(extra.request, params);
    const enveloped = app.getEnveloped({ request, params: payload, socket: extra.socket, req: extra.request });
    return { enveloped, contextValue: await enveloped.contextFactory() };
  };

  const handle = useServer<Record<string, unknown> | undefined, Extra>(
    {
      // The request's own envelop rides in rootValue (onSubscribe below), a field graphql-ws types as unknown.
      execute: (args) => (args.rootValue as Pick<Enveloped, "execute">).execute(args),
      subscribe: (args) => (args.rootValue as Pick<Enveloped, "subscribe">).subscribe(args),
      onConnect: async (ctx) => {
        try {
          const { contextValue } = await contextFor(ctx.extra, ctx.connectionParams);
          // The connection's own check is over; it holds no transaction.
          await (contextValue as { finish?: () => Promise<void> }).finish?.();
          return true;
        } catch (err) {
          if (!(err instanceof GraphQLError)) options.logger.warn({ err }, "websocket connection_init failed");
          ctx.extra.socket.close(CloseCode.Forbidden, closeReason(err));
          return false;
        }
      },
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors?.length ? { ...result, errors: result.errors.map((e) => withoutInternals(e.toJSON())) } : undefined,
      onSubscribe: async (ctx, id, payload) => {
        try {
          const { enveloped, contextValue } = await contextFor(ctx.extra, ctx.connectionParams, payload);
          // A live stream's plain results are framed and sent by its own writer (live-writers.ts).
          bindLiveWriter(contextValue as object, wsWriter(ctx.extra.socket, id));
          const { schema, execute, subscribe, parse, validate } = enveloped;
          const document = parse(payload.query);
          const errors = validate(schema, document);
          if (errors.length) return errors.map(withoutInternals);
          return {
            schema,
            document,
            operationName: payload.operationName,
            variableValues: payload.variables,
            contextValue,
            rootValue: { execute, subscribe },
          } as ExecutionArgs;
        } catch (err) {
          if (err instanceof GraphQLError) return [withoutInternals(err)];
          options.logger.warn({ err }, "websocket subscribe failed");
          return [new GraphQLError("Unexpected error.", { extensions: { code: "INTERNAL_SERVER_ERROR" } })];
        }
      },
    },
    wss,
    // graphql-ws's keep-alive off: one sweep for every socket (ws-keepalive.ts).
    0,
  );
  const stopKeepAlive = startKeepAlive(wss, options.keepAliveMs ?? 12_000);

  return {
    wss,
    /** Closes every socket with 1012 (service restart: reconnect) and stops accepting. */
    async close() {
      stopKeepAlive();
      for (const socket of wss.clients) socket.close(1012, "Server restarting: reconnect");
      await handle.dispose();
    },
  };
}
