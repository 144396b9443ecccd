import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";

/**
 * Subscription clients for tests: GraphQL over SSE (Yoga's distinct
 * connections mode: `event: next` / `event: complete`) read from a fetch
 * response, and graphql-ws over a real WebSocket. Both collect what they
 * receive; `next()` waits for the next message (failing after `timeoutMs`,
 * never asserting on elapsed time).
 */
export interface LiveMessage {
  kind: "next" | "complete" | "error" | "closed";
  payload?: any;
  code?: number;
  reason?: string;
}

class Inbox {
  private readonly items: LiveMessage[] = [];
  private waiters: ((m: LiveMessage) => void)[] = [];
  readonly seen: LiveMessage[] = [];
  put(m: LiveMessage) {
    this.seen.push(m);
    const w = this.waiters.shift();
    if (w) w(m);
    else this.items.push(m);
  }
  next(timeoutMs = 10_000): Promise<LiveMessage> {
    const m = this.items.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(new Error(`no live message within ${timeoutMs} ms; seen: ${JSON.stringify(this.seen).slice(0, 2000)}`));
      }, timeoutMs);
      const done = (msg: LiveMessage) => {
        clearTimeout(timer);
        resolve(msg);
      };
      this.waiters.push(done);
    });
  }
}

export interface LiveSubscription {
  status: number;
  /** The next message (next, complete, error or closed). */
  next(timeoutMs?: number): Promise<LiveMessage>;
  /** The next `next` payload's data field, failing on anything else. */
  nextData(timeoutMs?: number): Promise<any>;
  seen: LiveMessage[];
  close(): void;
}

function withData(inbox: Inbox) {
  return async (timeoutMs?: number) => {
    const m = await inbox.next(timeoutMs);
    if (m.kind !== "next" || m.payload?.errors) throw new Error(`expected data, got ${JSON.stringify(m)}`);
    return m.payload.data;
  };
}

type Fetch = (url: string, init: RequestInit) => Promise<Response> | Response;

/** A subscription over SSE (POST, Accept: text/event-stream). */
export async function sseSubscribe(
  fetchFn: Fetch,
  url: string,
  body: { query: string; variables?: Record<string, unknown>; operationName?: string },
  headers: Record<string, string>,
): Promise<LiveSubscription> {
  const inbox = new Inbox();
  const abort = new AbortController();
  const res = await fetchFn(url, {
    method: "POST",
    headers: { accept: "text/event-stream", "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
    signal: abort.signal,
  });
  const sub: LiveSubscription = {
    status: res.status,
    next: (t) => inbox.next(t),
    nextData: withData(inbox),
    seen: inbox.seen,
    close: () => {
      abort.abort();
      // In-process (app.fetch) nothing watches the signal: cancel the body too.
      void reader?.cancel().catch(() => {});
    },
  };
  let reader: ReadableStreamDefaultReader<string> | undefined;
  if (!res.body || !res.headers.get("content-type")?.includes("text/event-stream")) {
    const text = await res.text();
    inbox.put({ kind: "error", payload: text ? JSON.parse(text) : null });
    return sub;
  }
  void (async () => {
    reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += value;
        let cut: number;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = "";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (event === "next") inbox.put({ kind: "next", payload: JSON.parse(data) });
          else if (event === "complete") inbox.put({ kind: "complete" });
        }
      }
    } catch {
      // aborted
    }
    inbox.put({ kind: "closed" });
  })();
  return sub;
}

/** A graphql-ws client over a real WebSocket. */
export function wsClient(url: string, connectionParams: Record<string, string>): { client: Client; closed: Promise<{ code: number; reason: string }> } {
  let onClosed!: (v: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((r) => (onClosed = r));
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams,
    retryAttempts: 0,
    lazy: false,
    // Reported through `closed` (and each subscription's sink), not the console.
    onNonLazyError: () => {},
    on: { closed: (e) => onClosed({ code: (e as CloseEvent).code, reason: String((e as CloseEvent).reason) }) },
  });
  return { client, closed };
}

/** One subscription on a graphql-ws client. */
export function wsSubscribe(client: Client, body: { query: string; variables?: Record<string, unknown> }): LiveSubscription {
  const inbox = new Inbox();
  const dispose = client.subscribe(body, {
    next: (payload) => inbox.put({ kind: "next", payload }),
    error: (err) => {
      const e = err as { code?: number; reason?: string } | readonly unknown[];
      inbox.put(Array.isArray(e) ? { kind: "error", payload: e } : { kind: "closed", code: (e as any).code, reason: (e as any).reason });
    },
    complete: () => inbox.put({ kind: "complete" }),
  });
  return { status: 101, next: (t) => inbox.next(t), nextData: withData(inbox), seen: inbox.seen, close: dispose };
}
