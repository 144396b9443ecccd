import http from "node:http";
import WebSocket from "ws";

/**
 * The bench's stream clients (bench/live.ts): the least a client of each
 * transport does to receive a subscription's results, as a load tool would,
 * so the thousand of them on the bench's machine take as little of the
 * cores the server is measured on as they can (docs/live-updates.md, "Tenth
 * round"). In production they are browsers on other machines.
 *
 * - SSE: one `node:http` POST with `Accept: text/event-stream`, its body read
 *   as text and cut at blank lines; an `event: next` block's data parsed.
 *   (The tests' client, test/helpers/live-client.ts, reads a fetch body
 *   through a TextDecoderStream and keeps every message for its assertions.)
 * - WebSocket: `ws` speaking graphql-transport-ws directly: connection_init,
 *   one subscribe, `next` payloads, `pong` for a protocol `ping`; `ws`
 *   answers the server's WebSocket pings itself. (The tests' client is
 *   graphql-ws's, with its own per-message validation and sinks.)
 *
 * Each calls `onNext` with a `next` message's payload (`{ data }` or `{ errors }`)
 * and `onEnd` once, when the stream ends for any reason.
 */
export interface BenchStream {
  /** Closes the stream; resolves once its connection is gone. */
  close(): Promise<void>;
}

export interface BenchStreamHandlers {
  onNext(payload: { data?: any; errors?: unknown }): void;
  onEnd(reason: string): void;
}

/** `onEnd` called at most once. */
function once(onEnd: (reason: string) => void): (reason: string) => void {
  let ended = false;
  return (reason) => {
    if (ended) return;
    ended = true;
    onEnd(reason);
  };
}

/** Opens an SSE subscription; resolves once the response's head has arrived (rejects on a status other than 200). */
export function sseStream(url: string, query: string, headers: Record<string, string>, on: BenchStreamHandlers): Promise<BenchStream> {
  const body = JSON.stringify({ query });
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: "POST",
      agent: false,
      headers: { accept: "text/event-stream", "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers },
    });
    const end = once(on.onEnd);
    const gone = new Promise<void>((r) => req.once("close", () => r()));
    req.once("error", (err) => {
      end(String(err));
      reject(err);
    });
    req.once("response", (res) => {
      if (res.statusCode !== 200 || !String(res.headers["content-type"]).includes("text/event-stream")) {
        res.resume();
        req.destroy();
        reject(new Error(`SSE subscription refused: HTTP ${res.statusCode}`));
        return;
      }
      res.setEncoding("utf8");
      let buffer = "";
      res.on("data", (chunk: string) => {
        buffer += chunk;
        let cut: number;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (block.startsWith("event: next\n")) {
            const at = block.indexOf("data:");
            if (at >= 0) on.onNext(JSON.parse(block.slice(at + 5)));
          } else if (block.startsWith("event: complete")) end("complete");
        }
      });
      res.once("close", () => end("closed"));
      resolve({
        close: () => {
          req.destroy();
          return gone;
        },
      });
    });
    req.end(body);
  });
}

/** Opens a graphql-transport-ws connection with one subscription; resolves once the server acknowledged the connection. */
export function wsStream(url: string, query: string, connectionParams: Record<string, string>, on: BenchStreamHandlers): Promise<BenchStream> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, "graphql-transport-ws");
    const end = once(on.onEnd);
    const gone = new Promise<void>((r) => ws.once("close", () => r()));
    const stream: BenchStream = {
      close: () => {
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
        return gone;
      },
    };
    ws.once("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: connectionParams })));
    ws.on("message", (raw) => {
      const m = JSON.parse(raw.toString()) as { type: string; id?: string; payload?: any };
      if (m.type === "next") on.onNext(m.payload);
      else if (m.type === "ping") ws.send('{"type":"pong"}');
      else if (m.type === "connection_ack") {
        ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query } }));
        resolve(stream);
      } else if (m.type === "error" || m.type === "complete") end(m.type);
    });
    ws.once("error", (err) => {
      end(String(err));
      reject(err);
    });
    ws.once("close", (code, reason) => {
      end(`closed ${code} ${reason.toString()}`);
      reject(new Error(`WebSocket closed before its connection was acknowledged: ${code} ${reason.toString()}`));
    });
  });
}
