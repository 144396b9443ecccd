import { randomUUID } from "node:crypto";
import { createServer, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { sseWriter, wsWriter } from "../../src/http/live-writers.ts";
import { sseStream, wsStream } from "../../bench/live-clients.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createDeployment as deploy, listenLive, subscriptionsUsed as used } from "../helpers/live-server.ts";
import { sseSubscribe } from "../helpers/live-client.ts";

/**
 * A subscription's own writer (src/http/live-writers.ts): over a real
 * socket, a plain result is framed and written by it (SSE and graphql-ws),
 * and the subscriber gets exactly what the transport's pipeline sends (an
 * in-process SSE subscriber, which has no socket, goes through Yoga's
 * processor); a consumer that does not read stalls the writer (its promise
 * stays pending until the peer reads), so its stream's events queue up as
 * they did behind the pipeline, and the execution's read transaction is
 * over before the write waits; a stream's coded end comes after its
 * written results, then `complete`.
 */

const METRICS_TOKEN = "metrics-token-live-writers-012345";
const QUERY = `subscription { deploymentUpdated { id status branch updatedAt project { id name } } }`;

let t: TestApp;
let live: Awaited<ReturnType<typeof listenLive>>;
let base: string;
/** Responses of requests sent with `x-test-stall`: the test corks their socket (a peer that does not read). */
const stallable: ServerResponse[] = [];

beforeAll(async () => {
  t = await createTestApp({ metricsToken: METRICS_TOKEN });
  // highWaterMark 1: a response whose socket is corked refuses a write at once (as a full send buffer does).
  live = await listenLive(t, { highWaterMark: 1, onRequest: (req, res) => void (req.headers["x-test-stall"] && stallable.push(res)) });
  base = live.base;
}, 120_000);

afterAll(async () => {
  await live?.close();
  await t?.close();
});

const subscriptionsUsed = (slug: string) => used(t, slug);

const createDeployment = (slug: string, branch: string) => deploy(t, slug, { branch });

/** What a socket subscriber received, in order: `data` (its deploymentUpdated id), `error:<code>`, `end:<reason>`. */
function recorder() {
  const seen: string[] = [];
  return {
    seen,
    on: {
      onNext: (p: { data?: any; errors?: any[] }) => seen.push(p.errors ? `error:${p.errors[0]?.extensions?.code}` : `data:${p.data?.deploymentUpdated?.id}`),
      onEnd: (reason: string) => seen.push(`end:${reason.split(" ")[0]}`),
    },
  };
}

async function writes(): Promise<{ writer: number; pipeline: number }> {
  const text = await (await t.app.fetch("http://localhost/metrics", { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
  const of = (via: string) => Number(text.match(new RegExp(`tenantgraph_live_writes_total\\{via="${via}"\\} (\\d+)`))?.[1] ?? 0);
  return { writer: of("writer"), pipeline: of("pipeline") };
}

describe("a subscription's own writer", () => {
  it("writes plain results on SSE and WebSocket sockets, the same JSON the pipeline sends", async () => {
    const authorization = `Bearer ${await t.memberToken("acme", "VIEWER")}`;
    const got = { sse: [] as unknown[], ws: [] as unknown[] };
    const on = (into: unknown[]) => ({ onNext: (p: unknown) => into.push(p), onEnd: () => {} });
    const sse = await sseStream(`http://${base}`, QUERY, { authorization }, on(got.sse));
    const socket = await wsStream(`ws://${base}`, QUERY, { authorization }, on(got.ws));
    const piped = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query: QUERY }, { authorization });
    try {
      // Every stream registered on the server before the change (a WebSocket client hears connection_ack before its subscribe is served).
      await expect.poll(() => subscriptionsUsed("acme"), { timeout: 20_000 }).toBe(3);
      const before = await writes();
      const id = await createDeployment("acme", "writers");
      const viaPipeline = (await piped.next(20_000)).payload;
      expect(viaPipeline.data.deploymentUpdated.id).toBe(id);
      await expect.poll(() => [got.sse.length, got.ws.length], { timeout: 20_000 }).toEqual([1, 1]);
      expect(got.sse[0]).toEqual(viaPipeline);
      expect(got.ws[0]).toEqual(viaPipeline);
      // The two socket subscribers' results by their writers, the in-process one's through Yoga's processor.
      const after = await writes();
      expect([after.writer - before.writer, after.pipeline - before.pipeline]).toEqual([2, 1]);
    } finally {
      piped.close();
      await Promise.all([sse.close(), socket.close()]);
    }
  }, 60_000);

  it("a removed member's streams get their written result, then the coded end and complete, in that order", async () => {
    const email = `writers-${randomUUID()}@acme.test`;
    const tenantId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
    const user = await t.clients.platform.user.create({ data: { email, authSubject: email, memberships: { create: { tenantId, role: "VIEWER" } } }, include: { memberships: true } });
    const authorization = `Bearer ${await t.token(email, "acme")}`;
    const sse = recorder();
    const socket = recorder();
    const streams = [await sseStream(`http://${base}`, QUERY, { authorization }, sse.on), await wsStream(`ws://${base}`, QUERY, { authorization }, socket.on)];
    try {
      await expect.poll(() => subscriptionsUsed("acme"), { timeout: 20_000 }).toBe(2);
      const before = await writes();
      const id = await createDeployment("acme", "before-removal");
      await expect.poll(() => [sse.seen.length, socket.seen.length], { timeout: 20_000 }).toEqual([1, 1]);
      const members = await t.gql(`{ members(first: 50) { edges { node { id user { email } } } } }`, { token: await t.memberToken("acme", "OWNER") });
      const membership = members.body.data.members.edges.find((e: any) => e.node.user.email === email).node.id;
      expect(user.memberships).toHaveLength(1);
      const removed = await t.gql(`mutation($m: ID!) { removeMember(input: { membershipId: $m }) { removedMembershipId } }`, {
        token: await t.memberToken("acme", "OWNER"),
        variables: { m: membership },
      });
      expect(removed.body.errors).toBeUndefined();
      const expected = [`data:${id}`, "error:TENANT_ACCESS_DENIED", "end:complete"];
      await expect.poll(() => [sse.seen, socket.seen], { timeout: 20_000 }).toEqual([expected, expected]);
      // The results by the writers, the coded ends through the pipeline (where errors are masked).
      const after = await writes();
      expect([after.writer - before.writer, after.pipeline - before.pipeline]).toEqual([2, 2]);
    } finally {
      await Promise.all(streams.map((s) => s.close()));
    }
  }, 60_000);

  it("a write waiting for a consumer that does not read holds no live-pool connection (the execution's transaction ended first)", async () => {
    // project { deployments } is not on the hub's shared read: the subscriber executes it in a read transaction of its own on the live pool.
    const query = `subscription { deploymentUpdated { id project { deployments(first: 1) { edges { node { id } } } } } }`;
    const authorization = `Bearer ${await t.memberToken("globex", "VIEWER")}`;
    const seen = recorder();
    const stream = await sseStream(`http://${base}`, query, { authorization, "x-test-stall": "1" }, seen.on);
    try {
      await expect.poll(() => subscriptionsUsed("globex"), { timeout: 20_000 }).toBe(1);
      const res = stallable.at(-1)!;
      res.socket!.cork();
      await createDeployment("globex", "stalled");
      // The event's result is buffered behind the corked socket and its write waits for a drain.
      await expect.poll(() => res.writableNeedDrain, { timeout: 20_000 }).toBe(true);
      const pool = t.clients.livePool;
      await expect.poll(() => pool.totalCount - pool.idleCount, { timeout: 5_000 }).toBe(0);
      expect(seen.seen).toEqual([]);
      res.socket!.uncork();
      await expect.poll(() => seen.seen.length, { timeout: 20_000 }).toBe(1);
      expect(seen.seen[0]).toMatch(/^data:/);
    } finally {
      await stream.close();
    }
  }, 60_000);
});

/** Writes through `write` until one does not resolve at once (the peer is not reading); returns that pending write. */
async function fillUntilPending(write: () => boolean | Promise<boolean>): Promise<{ settled: () => boolean; done: Promise<boolean> }> {
  for (let i = 0; i < 10_000; i++) {
    let settled = false;
    const done = Promise.resolve(write()).then((ok) => ((settled = true), ok));
    // A write the transport can take resolves within a few turns of the loop; one behind a full socket does not.
    for (let turn = 0; turn < 20 && !settled; turn++) await new Promise((r) => setImmediate(r));
    if (!settled) return { settled: () => settled, done };
  }
  throw new Error("the writes never stalled");
}

describe("a writer behind a consumer that does not read", () => {
  const big = JSON.stringify({ data: { filler: "x".repeat(256 * 1024) } });

  it("SSE: the write stays pending until the peer reads, then resolves true", async () => {
    let response!: ServerResponse;
    const local = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(":\n\n");
      response = res;
    });
    await new Promise<void>((resolve) => local.listen(0, "127.0.0.1", resolve));
    try {
      const res = await new Promise<import("node:http").IncomingMessage>((resolve) => request(`http://127.0.0.1:${(local.address() as AddressInfo).port}/`, resolve).end());
      res.pause();
      const activity = { wrote: false };
      const writer = sseWriter(response, activity);
      const pending = await fillUntilPending(() => writer.write(big));
      // Pending because the socket is full, not merely slow; the writes are marked for the keep-alive sweep.
      expect([pending.settled(), response.writableNeedDrain, activity.wrote]).toEqual([false, true, true]);
      res.resume();
      await expect(pending.done).resolves.toBe(true);
      res.destroy();
    } finally {
      local.closeAllConnections();
      await new Promise((resolve) => local.close(resolve));
    }
  }, 30_000);

  it("WebSocket: the write stays pending until the peer reads, then resolves true; a closed socket takes nothing", async () => {
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await new Promise((resolve) => wss.once("listening", resolve));
    const accepted = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
    const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
    try {
      await new Promise((resolve) => client.once("open", resolve));
      const peer = await accepted;
      (client as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
      const writer = wsWriter(peer, "1");
      const pending = await fillUntilPending(() => writer.write(big));
      expect([pending.settled(), peer.bufferedAmount > 0]).toEqual([false, true]);
      (client as unknown as { _socket: { pause(): void; resume(): void } })._socket.resume();
      await expect(pending.done).resolves.toBe(true);
      peer.terminate();
      await new Promise((resolve) => client.once("close", resolve));
      expect(await writer.write(big)).toBe(false);
    } finally {
      client.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  }, 30_000);
});
