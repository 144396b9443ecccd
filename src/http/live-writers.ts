import type { ServerResponse } from "node:http";
import type { WebSocket } from "ws";

/**
 * A subscription's own writer (docs/live-updates.md, "Tenth round"): a
 * result with nothing for the transport's pipeline to do (no errors, no
 * extensions) is framed and written here, on the stream's socket, instead
 * of going through Yoga's SSE processor (a web ReadableStream, two chunks
 * and a pump per event) or graphql-ws's iteration (its `next` hooks and a
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

/**
 * The SSE response of a subscription (Yoga's processor chose it: its head,
 * and the first keep-alive comment, are its own). Until the head is sent,
 * nothing is written here.
 */
export function sseWriter(res: ServerResponse): LiveWriter {
  return {
    write(json) {
      if (!res.headersSent || res.writableEnded || res.destroyed) return false;
      if (res.write(`event: next\ndata: ${json}\n\n`)) return true;
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
