import { request, type ClientRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SseStreams } from "../../src/http/sse-streams.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { sseSubscribe } from "../helpers/live-client.ts";
import { createDeployment, listenLive, subscriptionsUsed } from "../helpers/live-server.ts";

/**
 * The SSE streams' keep-alive (src/http/sse-streams.ts): Yoga's framing with
 * one sweep for every stream instead of an interval each. Over a real
 * socket, read byte for byte: a `:` comment when the stream opens, one at
 * each visit of the sweep to a stream that was written nothing since the
 * previous visit, none to a stream that had an event; a client that goes
 * away ends its stream (and gives its SUBSCRIPTIONS slot back) without any
 * write; a stream the server ends leaves the sweep. The sweep's turns are
 * driven by hand (one slice: each turn visits every stream), never by a
 * timer.
 */

let t: TestApp;
let live: Awaited<ReturnType<typeof listenLive>>;
let turn = () => {};
let sse: SseStreams;

beforeAll(async () => {
  sse = new SseStreams(60_000, { slices: 1, schedule: (fn) => ((turn = fn), () => (turn = () => {})) });
  t = await createTestApp({ sseStreams: sse });
  live = await listenLive(t);
}, 120_000);

afterAll(async () => {
  await live?.close();
  await t?.close();
});

/** A subscription over SSE on a real socket; `frames()` is every frame received so far (`:` for a comment), the raw text cut at blank lines. */
function rawSubscribe(query: string, headers: Record<string, string>): Promise<{ frames(): string[]; req: ClientRequest; closed: Promise<void> }> {
  const body = JSON.stringify({ query });
  return new Promise((resolve, reject) => {
    const req = request(`http://${live.base}`, {
      method: "POST",
      agent: false,
      headers: { accept: "text/event-stream", "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers },
    });
    const closed = new Promise<void>((r) => req.once("close", () => r()));
    req.once("error", reject);
    req.once("response", (res) => {
      expect([res.statusCode, res.headers["content-type"], res.headers["cache-control"]]).toEqual([200, "text/event-stream", "no-cache"]);
      let raw = "";
      res.setEncoding("utf8").on("data", (chunk: string) => (raw += chunk));
      resolve({ frames: () => raw.split("\n\n").slice(0, -1), req, closed });
    });
    req.end(body);
  });
}

const QUERY = `subscription { deploymentUpdated { id status } }`;
const event = (id: string) => `event: next\ndata: {"data":{"deploymentUpdated":{"id":"${id}","status":"QUEUED"}}}`;

describe("SSE keep-alive", () => {
  it("a comment on opening and at each visit to a stream written nothing since the last; none after an event", async () => {
    const s = await rawSubscribe(QUERY, { authorization: `Bearer ${await t.memberToken("acme", "VIEWER")}` });
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
    await expect.poll(() => sse.size).toBe(0);
  });

  it("a client that goes away ends its stream and frees its slot at once: no write needed", async () => {
    const before = await subscriptionsUsed(t, "acme");
    const s = await rawSubscribe(QUERY, { authorization: `Bearer ${await t.memberToken("acme", "VIEWER")}` });
    await expect.poll(() => s.frames()).toEqual([":"]);
    await expect.poll(() => subscriptionsUsed(t, "acme")).toBe(before + 1);
    s.req.destroy();
    // The sweep is not turned: nothing is written to the stream after the client left.
    await expect.poll(async () => [sse.size, await subscriptionsUsed(t, "acme")]).toEqual([0, before]);
    expect(s.frames()).toEqual([":"]);
  });

  it("in process (app.fetch, no socket), the comments go through the response's body", async () => {
    const abort = new AbortController();
    const res = await t.app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { accept: "text/event-stream", "content-type": "application/json", authorization: `Bearer ${await t.memberToken("acme", "VIEWER")}` },
      body: JSON.stringify({ query: QUERY }),
      signal: abort.signal,
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let raw = "";
    const read = async (until: string) => {
      while (raw.length < until.length) raw += (await reader.read()).value ?? "";
      return raw;
    };
    expect(await read(":\n\n")).toBe(":\n\n");
    turn();
    expect(await read(":\n\n:\n\n")).toBe(":\n\n:\n\n");
    abort.abort();
    await expect.poll(() => sse.size).toBe(0);
  });

  it("in process (app.fetch, no socket), an aborted request ends its stream at once too", async () => {
    const before = await subscriptionsUsed(t, "acme");
    const s = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query: QUERY }, { authorization: `Bearer ${await t.memberToken("acme", "VIEWER")}` });
    await expect.poll(async () => [sse.size, await subscriptionsUsed(t, "acme")]).toEqual([1, before + 1]);
    s.close();
    await expect.poll(async () => [sse.size, await subscriptionsUsed(t, "acme")]).toEqual([0, before]);
  });

  it("a stream the server ends gets its coded error (Yoga's serialisation: no internal extensions), then complete, and leaves the sweep", async () => {
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
    const payload = JSON.parse(end!.slice("event: next\ndata: ".length));
    expect(payload.errors).toHaveLength(1);
    expect(Object.keys(payload.errors[0].extensions)).toEqual(["code"]);
    expect(payload.errors[0].extensions.code).toBe("UNAUTHENTICATED");
    await s.closed;
    expect(sse.size).toBe(0);
  });
});
