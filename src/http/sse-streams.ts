import type { ServerResponse } from "node:http";
import type { ExecutionResult } from "graphql";
import { processRegularResult, type Plugin } from "graphql-yoga";
import type { Logger } from "../infra/logger.ts";
import { plainJson, sseNext, type SseActivity } from "./live-writers.ts";
import { Sweep, type SweepOptions } from "./sweep.ts";

/**
 * The SSE responses of subscriptions (docs/live-updates.md, "Transports" and
 * "Eleventh round"): Yoga's framing ("distinct connections" mode: a `:`
 * comment when the stream opens, `event: next` / `data: <json>` per result,
 * `event: complete` / `data:` at the end; its headers), with one keep-alive
 * for all streams instead of Yoga's interval per stream. Yoga's processor
 * gives every stream a `setInterval` of its own (12 s, fixed), so streams
 * opened together are pinged together, hundreds of writes in one turn of the
 * event loop every 12 s; here one timer turns through slices of the period
 * (src/http/sweep.ts), and a stream is sent a comment only when nothing was
 * written to it since the sweep's previous visit: a comment proves no more
 * about the client than an event does (both are writes of the server's),
 * and a client that closes its connection ends its stream at once, without
 * waiting for a write (test/integration/live-sse-keepalive.test.ts). A
 * silent stream gets a comment within two periods (24 s by default) of its
 * last write; proxies' idle timeouts are commonly 60 s or more.
 *
 * One write per result: the frame is one chunk, so the stream's own writer
 * (src/http/live-writers.ts), which writes plain results to the socket
 * itself, and the sweep's comments land between two frames, never inside.
 */

type ResultProcessor = Parameters<Parameters<NonNullable<Plugin["onResultProcess"]>>[0]["setResultProcessor"]>[0];
type FetchAPI = Parameters<ResultProcessor>[1];

interface Kept {
  activity: SseActivity;
  comment(): void;
}

const HEADERS = {
  "Content-Type": "text/event-stream",
  Connection: "keep-alive",
  "Cache-Control": "no-cache",
  "Content-Encoding": "none",
};

/**
 * A result's JSON as Yoga serialises it: a result with errors or extensions
 * through Yoga's own serialiser (processRegularResult's body), which strips
 * what is internal (an error's `http` and `unexpected` extensions, the
 * result's `http`).
 */
export async function jsonOf(result: ExecutionResult, fetchAPI: FetchAPI): Promise<string> {
  return result.errors?.length || result.extensions ? processRegularResult(result, fetchAPI, "application/json").text() : plainJson(result);
}

export class SseStreams {
  private readonly sweep: Sweep<Kept>;
  private readonly encoder = new TextEncoder();

  private readonly logger: Logger | undefined;

  constructor(periodMs = 12_000, options: SweepOptions & { logger?: Logger } = {}) {
    this.logger = options.logger;
    this.sweep = new Sweep<Kept>(
      periodMs,
      (kept) => {
        if (kept.activity.wrote) kept.activity.wrote = false;
        else kept.comment();
      },
      options,
    );
  }

  /** Streams open. */
  get size(): number {
    return this.sweep.size;
  }

  /**
   * Yoga's result processor for one subscription's results (an async
   * iterable), its writes marked on `activity`; `signal` is the request's,
   * aborted when the client has gone: the results end then, not at the
   * stream's next write (in process, Yoga's processor learnt it only when
   * its next keep-alive went through the response's body). `res`, the
   * node:http response when there is one, takes the keep-alive comments
   * directly (whole frames: the body's chunks are too).
   */
  processor(activity: SseActivity, signal?: AbortSignal, res?: ServerResponse): ResultProcessor {
    return (result, fetchAPI) => {
      const iterator = (result as AsyncIterable<ExecutionResult>)[Symbol.asyncIterator]();
      const bytes = (text: string) => this.encoder.encode(text);
      let stopped = false;
      let remove = () => {};
      // A pull waiting for the next result: the consumer has taken everything (in process, where there is no socket to ask).
      let pulling = false;
      const stop = () => {
        if (stopped) return;
        stopped = true;
        remove();
        signal?.removeEventListener("abort", gone);
        res?.off("close", gone);
      };
      const gone = () => {
        if (stopped) return;
        stop();
        // The stream is over either way; a failing return is logged, never thrown from an event listener.
        Promise.resolve()
          .then(() => iterator.return?.())
          .catch((err: unknown) => this.logger?.warn({ err }, "an SSE subscription's results did not end cleanly"));
      };
      // Before the body is read (its start runs at the first read, which never comes for a client gone meanwhile);
      // the response's close too (a request rebuilt without the client's signal, such as a chunked body's).
      if (signal?.aborted || res?.destroyed) gone();
      else {
        signal?.addEventListener("abort", gone, { once: true });
        res?.once("close", gone);
      }
      const body = new fetchAPI.ReadableStream<Uint8Array>({
        start: (controller) => {
          // First bytes at once: some browsers' fetch waits for a body byte, not the head.
          controller.enqueue(bytes(":\n\n"));
          if (stopped) return;
          remove = this.sweep.add({
            activity,
            // On the response itself when there is one (no ReadableStream, no pump); a consumer that
            // does not read is not sent more.
            comment: () => {
              if (!res) pulling && controller.enqueue(bytes(":\n\n"));
              else if (res.headersSent && !res.writableEnded && !res.destroyed && !res.writableNeedDrain) res.write(":\n\n");
            },
          });
        },
        pull: async (controller) => {
          pulling = true;
          try {
            const item = await iterator.next();
            pulling = false;
            if (item.value != null) {
              activity.wrote = true;
              controller.enqueue(bytes(sseNext(await jsonOf(item.value, fetchAPI))));
            }
            if (item.done) {
              stop();
              controller.enqueue(bytes("event: complete\ndata:\n\n"));
              controller.close();
            }
          } catch (err) {
            pulling = false;
            stop();
            this.logger?.error({ err }, "an SSE subscription's results failed");
            controller.error(err);
            // The pump stops on the error without ending the response: cut it, so the client reconnects.
            res?.destroy();
          }
        },
        cancel: async (reason) => {
          stop();
          await iterator.return?.(reason);
        },
      });
      // Headers of its own: the response's hooks (request id, tenant, CORS) set theirs on this object (review).
      return new fetchAPI.Response(body, { status: 200, headers: { ...HEADERS } });
    };
  }
}
