import type { Plugin } from "graphql-yoga";
import { errorResponse } from "./json-response.ts";
import { moveState } from "./request-state.ts";

export interface BodyLimitOptions {
  /** Largest request body accepted, in bytes; larger ones get 413 PAYLOAD_TOO_LARGE. */
  maxBodyBytes: number;
}

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

/**
 * Refuses a body over the limit before anything reads it: by its declared
 * length, or, for a chunked body that declares none, by reading it up to the
 * limit and no further.
 */
export function useBodyLimit(options: BodyLimitOptions): Plugin {
  const max = options.maxBodyBytes;
  const tooLarge = () => errorResponse(413, "PAYLOAD_TOO_LARGE", "Request body too large");
  return {
    async onRequest({ request, endResponse, setRequest, fetchAPI }) {
      const declared = request.headers.get("content-length");
      if (declared !== null) {
        if (Number(declared) > max) return endResponse(tooLarge());
      } else if (request.body && request.method !== "GET" && request.method !== "HEAD") {
        const body = await readLimited(request.body, max);
        if (!body) return endResponse(tooLarge());
        // The client's signal kept: a request whose client has gone is aborted, rebuilt or not (review: an SSE stream of a chunked request never ended).
        const replacement = new fetchAPI.Request(request.url, { method: request.method, headers: request.headers, body, signal: request.signal });
        moveState(request, replacement);
        setRequest(replacement);
      }
    },
  };
}
