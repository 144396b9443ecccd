import type { ServerResponse } from "node:http";
import type { ExecutionResult } from "graphql";
import type { WebSocket } from "ws";

/**
 * A subscription's own writer (docs/live-updates.md, "Tenth round"): a
 * result with nothing for the transport's pipeline to do (no errors, no
 * extensions) is framed and written here, on the stream's socket, instead
 * of going through the SSE processor (src/http/sse-streams.ts: a web
 * ReadableStream and a pump per event) or graphql-ws's iteration (its `next` hooks and a
 * second serialisation of the result per subscriber). The frames are the
 * transports' own: SSE `event: next` / `data: <json>`, graphql-ws
 * `{"id","type":"next","payload"}`. src/http/use-live-delivery.ts decides
 * which results go this way, and keeps the order: once a result of a
 * stream has gone through the pipeline, every later one does too.
 *
 * `write` resolves false when the transport cannot take it (nothing written:
 * the result goes through the pipeline), true once it was written and the
 * transport can take the next one: a consumer that does not read stalls its
 * stream here, as it stalled the pipeline, so its events queue up in the
 * stream until it is closed as a slow consumer (src/modules/live/stream.ts).
 */
export interface LiveWriter {
  write(json: string): boolean | Promise<boolean>;
}

const writers = new WeakMap<object, LiveWriter>();

/** The writer of the subscription whose context is `ctx`. */
export function bindLiveWriter(ctx: object, writer: LiveWriter): void {
  writers.set(ctx, writer);
}

export function liveWriterOf(ctx: object): LiveWriter | undefined {
  return writers.get(ctx);
}

/** One SSE stream's activity since the keep-alive sweep last visited it (src/http/sse-streams.ts): its processor and its writer mark their writes. */
export interface SseActivity {
  wrote: boolean;
}

/** An SSE `next` event carrying `json` (one frame: written whole, by the writer or as one chunk of the processor's body). */
export function sseNext(json: string): string {
  return `event: next\ndata: ${json}\n\n`;
}

/** A plain result's JSON (no errors, no extensions: nothing internal to strip): its own `stringify` when it has one (graphql-jit's results, a shared result's serialisedOnce). */
export function plainJson(result: ExecutionResult): string {
  const own = (result as { stringify?: (r: unknown) => string }).stringify;
  return own ? own(result) : JSON.stringify(result);
}

/**
 * The SSE response of a subscription (its head, and the first keep-alive
 * comment, are written by its processor: src/http/sse-streams.ts). Until the
 * head is sent, nothing is written here. Its writes are marked on
 * `activity`: the keep-alive sweep skips a stream written to since its last
 * visit.
 */
export function sseWriter(res: ServerResponse, activity: SseActivity): LiveWriter {
  return {
    write(json) {
      if (!res.headersSent || res.writableEnded || res.destroyed) return false;
      activity.wrote = true;
      if (res.write(sseNext(json))) return true;
      return new Promise((resolve) => {
        const go = () => {
          res.off("drain", go);
          res.off("close", go);
          resolve(true);
        };
        res.on("drain", go);
        res.on("close", go);
      });
    },
  };
}

/** One graphql-ws subscription (`id`) on its socket; resolves once the frame has left for the kernel, as graphql-ws's own send does. */
export function wsWriter(socket: WebSocket, id: string): LiveWriter {
  const head = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
  return {
    write(json) {
      if (socket.readyState !== socket.OPEN) return false;
      return new Promise((resolve) => socket.send(`${head}${json}}`, () => resolve(true)));
    },
  };
}
