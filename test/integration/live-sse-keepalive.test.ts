import { request, type ClientRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { GraphQLError } from "graphql";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { jsonOf, SseStreams } from "../../src/http/sse-streams.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { sseSubscribe } from "../helpers/live-client.ts";
import { createDeployment, listenLive, subscriptionsUsed } from "../helpers/live-server.ts";

/**
 * The SSE streams' processor and keep-alive (src/http/sse-streams.ts):
 * Yoga's framing with one sweep for every stream instead of an interval
 * each. Over a real socket, read byte for byte: a `:` comment when the
 * stream opens, one at each visit of the sweep to a stream that was written
 * nothing since the previous visit, none to a stream that had an event,
 * none queued behind a consumer that does not read; a client that goes away
 * ends its stream (and gives its SUBSCRIPTIONS slot back) without any
 * write, whether its request had a declared length or a chunked body, and
 * in process whether or not the body was read; a stream the server ends
 * leaves the sweep; every response has headers of its own. The sweep's
 * turns are driven by hand (one slice: each turn visits every stream),
 * never by a timer.
 */

let t: TestApp;
let live: Awaited<ReturnType<typeof listenLive>>;
let turn = () => {};
let sse: SseStreams;
/** The server's side of each SSE request, in order of arrival. */
const responses: ServerResponse[] = [];
let baseline: number;

beforeAll(async () => {
  sse = new SseStreams(60_000, { slices: 1, schedule: (fn) => ((turn = fn), () => (turn = () => {})) });
  t = await createTestApp({ sseStreams: sse });
  live = await listenLive(t, { onRequest: (req, res) => void (req.headers.accept === "text/event-stream" && responses.push(res)) });
  baseline = await subscriptionsUsed(t, "acme");
}, 120_000);

afterAll(async () => {
  await live?.close();
  await t?.close();
});

// Every test leaves no stream behind: the sweep empty, acme's slots back (given back asynchronously).
afterEach(async () => {
  await expect.poll(async () => [sse.size, await subscriptionsUsed(t, "acme")]).toEqual([0, baseline]);
});

interface RawStream {
  frames(): string[];
  req: ClientRequest;
  res: IncomingMessage;
  closed: Promise<void>;
}

/** A subscription over SSE on a real socket; `frames()` is every frame received so far (`:` for a comment), the raw text cut at blank lines. */
function rawSubscribe(query: string, headers: Record<string, string>, options: { chunked?: boolean } = {}): Promise<RawStream> {
  const body = JSON.stringify({ query });
  return new Promise((resolve, reject) => {
    const req = request(`http://${live.base}`, {
      method: "POST",
      agent: false,
      headers: { accept: "text/event-stream", "content-type": "application/json", ...(options.chunked ? {} : { "content-length": Buffer.byteLength(body) }), ...headers },
    });
    const closed = new Promise<void>((r) => req.once("close", () => r()));
    req.once("error", reject);
    req.once("response", (res) => {
      const head = [res.statusCode, res.headers["content-type"], res.headers["cache-control"]];
      if (JSON.stringify(head) !== JSON.stringify([200, "text/event-stream", "no-cache"])) return reject(new Error(`not an SSE stream: ${JSON.stringify(head)}`));
      let raw = "";
      res.setEncoding("utf8").on("data", (chunk: string) => (raw += chunk));
      resolve({ frames: () => raw.split("\n\n").slice(0, -1), req, res, closed });
    });
    if (options.chunked) req.write(body.slice(0, 10));
    req.end(options.chunked ? body.slice(10) : body);
  });
}

const QUERY = `subscription { deploymentUpdated { id status } }`;
const event = (id: string) => `event: next\ndata: {"data":{"deploymentUpdated":{"id":"${id}","status":"QUEUED"}}}`;
const viewer = async () => ({ authorization: `Bearer ${await t.memberToken("acme", "VIEWER")}` });
const sseInit = async (signal: AbortSignal, headers: Record<string, string> = {}): Promise<RequestInit> => ({
  method: "POST",
  headers: { accept: "text/event-stream", "content-type": "application/json", ...(await viewer()), ...headers },
  body: JSON.stringify({ query: QUERY }),
  signal,
});

describe("SSE keep-alive", () => {
  it("a comment on opening and at each visit to a stream written nothing since the last; none after an event", async () => {
    const s = await rawSubscribe(QUERY, await viewer());
    await expect.poll(() => s.frames()).toEqual([":"]);
    expect(sse.size).toBe(1);
    turn();
    await expect.poll(() => s.frames()).toEqual([":", ":"]);
    const first = await createDeployment(t, "acme");
    await expect.poll(() => s.frames()).toEqual([":", ":", event(first)]);
    // The stream had an event since the last visit: this turn writes nothing (the next frame is the next event).
    turn();
    const second = await createDeployment(t, "acme");
    await expect.poll(() => s.frames()).toEqual([":", ":", event(first), event(second)]);
    // One visit forgets the event, the next finds the stream silent.
    turn();
    turn();
    await expect.poll(() => s.frames()).toEqual([":", ":", event(first), event(second), ":"]);
    s.req.destroy();
    await s.closed;
  });

  it("a consumer that does not read is sent no comments: they would only pile up in its response", async () => {
    const s = await rawSubscribe(QUERY, await viewer());
    await expect.poll(() => s.frames()).toEqual([":"]);
    s.res.pause();
    const server = responses.at(-1)!;
    // The socket full, as behind a client that stopped reading (what a large event would do).
    const filler = `event: next\ndata: {"data":{"filler":"${"x".repeat(64 * 1024)}"}}\n\n`;
    for (let i = 0; i < 1_000 && !server.writableNeedDrain; i++) server.write(filler);
    expect(server.writableNeedDrain).toBe(true);
    const held = server.writableLength;
    for (let i = 0; i < 5; i++) turn();
    expect(server.writableLength).toBe(held);
    s.req.destroy();
    await s.closed;
  });

  it("a client that goes away ends its stream and frees its slot at once: no turn of the sweep needed", async () => {
    const s = await rawSubscribe(QUERY, await viewer());
    await expect.poll(() => s.frames()).toEqual([":"]);
    await expect.poll(() => subscriptionsUsed(t, "acme")).toBe(baseline + 1);
    s.req.destroy();
    // afterEach: the sweep empty and the slot given back, the sweep never turned.
  });

  it("so does one whose request had a chunked body (no declared length: the body-limit plugin rebuilds the request)", async () => {
    const s = await rawSubscribe(QUERY, await viewer(), { chunked: true });
    await expect.poll(() => s.frames()).toEqual([":"]);
    await expect.poll(() => subscriptionsUsed(t, "acme")).toBe(baseline + 1);
    s.req.destroy();
  });

  it("in process (app.fetch, no socket), the comments go through the response's body", async () => {
    const abort = new AbortController();
    const res = await t.app.fetch("http://localhost/graphql", await sseInit(abort.signal));
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let raw = "";
    const read = async (length: number) => {
      while (raw.length < length) raw += (await reader.read()).value ?? "";
      return raw;
    };
    expect(await read(3)).toBe(":\n\n");
    turn();
    expect(await read(6)).toBe(":\n\n:\n\n");
    abort.abort();
  });

  it("in process, an aborted request ends its stream at once, its body read or never read", async () => {
    const s = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query: QUERY }, await viewer());
    await expect.poll(async () => [sse.size, await subscriptionsUsed(t, "acme")]).toEqual([1, baseline + 1]);
    s.close();
    await expect.poll(async () => [sse.size, await subscriptionsUsed(t, "acme")]).toEqual([0, baseline]);
    // A caller that drops the response without reading a byte of it: the stream has not even started.
    const abort = new AbortController();
    const unread = await t.app.fetch("http://localhost/graphql", await sseInit(abort.signal));
    expect(unread.status).toBe(200);
    await expect.poll(() => subscriptionsUsed(t, "acme")).toBe(baseline + 1);
    abort.abort();
  });

  it("each response has headers of its own (the hooks' CORS headers of one are not another's)", async () => {
    const origin = "https://app.example.test";
    const app = createApp(testAppDeps(t.clients, t.store, { config: { corsOrigins: [origin] }, sseStreams: sse }));
    const abort = new AbortController();
    const allowed = await app.fetch("http://localhost/graphql", await sseInit(abort.signal, { origin }));
    const plain = await app.fetch("http://localhost/graphql", await sseInit(abort.signal));
    expect([allowed.headers.get("access-control-allow-origin"), plain.headers.get("access-control-allow-origin")]).toEqual([origin, null]);
    expect(allowed.headers.get("x-request-id")).not.toBe(plain.headers.get("x-request-id"));
    abort.abort();
  });

  it("a stream the server ends gets its coded error, then complete, and leaves the sweep", async () => {
    const owner = await t.memberToken("wayne", "OWNER");
    const k = await t.gql(`mutation { createApiKey(input: { name: "sse keep-alive", role: DEVELOPER }) { apiKey { id } secret } }`, { token: owner });
    expect(k.body.errors).toBeUndefined();
    const s = await rawSubscribe(QUERY, { "x-api-key": k.body.data.createApiKey.secret });
    await expect.poll(() => [s.frames(), sse.size]).toEqual([[":"], 1]);
    const r = await t.gql(`mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { revokedAt } } }`, { token: owner, variables: { id: k.body.data.createApiKey.apiKey.id } });
    expect(r.body.errors).toBeUndefined();
    await expect.poll(() => s.frames().length).toBe(3);
    const [open, end, complete] = s.frames();
    expect([open, complete]).toEqual([":", "event: complete\ndata:"]);
    expect(end!.startsWith("event: next\ndata: ")).toBe(true);
    expect(JSON.parse(end!.slice("event: next\ndata: ".length)).errors.map((e: any) => e.extensions.code)).toEqual(["UNAUTHENTICATED"]);
    await s.closed;
  });
});

describe("an SSE event's JSON", () => {
  it("is Yoga's for a result with errors or extensions: what is internal (http, unexpected) stripped", async () => {
    const error = new GraphQLError("Gone", { extensions: { code: "UNAUTHENTICATED", http: { status: 401 }, unexpected: true } });
    const json = await jsonOf({ errors: [error], extensions: { http: { status: 401 }, cost: 3 } } as any, t.app.fetchAPI);
    expect(JSON.parse(json)).toEqual({ errors: [{ message: "Gone", extensions: { code: "UNAUTHENTICATED" } }], extensions: { cost: 3 } });
  });
  it("is the result's own for a plain one (its stringify when it has one)", async () => {
    const result = Object.defineProperty({ data: { a: 1 } }, "stringify", { value: () => `{"data":{"a":1},"own":true}` });
    expect(await jsonOf(result, t.app.fetchAPI)).toBe(`{"data":{"a":1},"own":true}`);
  });
});
