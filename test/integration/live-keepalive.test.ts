import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { attachWebSocket } from "../../src/http/websocket.ts";
import { startKeepAlive } from "../../src/http/ws-keepalive.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

/**
 * The WebSockets' keep-alive (src/http/ws-keepalive.ts, one sweep for every
 * socket): the server pings each socket once a period and cuts one that has
 * not answered the previous ping; a client that answers stays. The period
 * is short here (1 s); what is asserted is the outcome, never a time.
 */

let t: TestApp;
let server: Server;
let ws: ReturnType<typeof attachWebSocket>;
let url: string;

beforeAll(async () => {
  t = await createTestApp();
  server = createServer();
  ws = attachWebSocket(server, t.app as unknown as Parameters<typeof attachWebSocket>[1], { logger: createLogger("silent"), keepAliveMs: 1_000 });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
}, 120_000);

afterAll(async () => {
  await ws?.close();
  await new Promise((resolve) => server?.close(resolve));
  await t?.close();
});

/** A client socket, acknowledged (connection_init with a member's token); counts the pings it receives; `autoPong: false` never answers them. */
async function connect(autoPong: boolean) {
  const socket = new WebSocket(url, "graphql-transport-ws", { autoPong });
  const seen = { pings: 0, closed: null as number | null };
  socket.on("ping", () => seen.pings++);
  socket.on("close", (code) => (seen.closed = code));
  await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
  const acked = new Promise((resolve) => socket.once("message", (m) => resolve(JSON.parse(String(m)).type)));
  socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${await t.memberToken("acme", "VIEWER")}` } }));
  expect(await acked).toBe("connection_ack");
  return { socket, seen };
}

describe("WebSocket keep-alive", () => {
  it("pings every socket; one that answers stays open, one that does not is cut", async () => {
    const answering = await connect(true);
    const silent = await connect(false);
    // Terminated (1006: no close frame), not closed by graphql-ws.
    await expect.poll(() => silent.seen.closed, { timeout: 30_000 }).toBe(1006);
    expect(silent.seen.pings).toBeGreaterThan(0);
    // The answering socket went through more pings than the silent one was allowed, and is still open.
    await expect.poll(() => answering.seen.pings, { timeout: 30_000 }).toBeGreaterThan(silent.seen.pings + 2);
    expect([answering.seen.closed, answering.socket.readyState]).toEqual([null, WebSocket.OPEN]);
    answering.socket.close();
  }, 90_000);
});

describe("WebSocket keep-alive in slices", () => {
  it("sockets that connect together are pinged a turn apart, each once a period; a silent one is cut at its next turn", async () => {
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await new Promise((resolve) => wss.once("listening", resolve));
    let turn = () => {};
    // The turns are driven by hand: 4 slices of a 60 s period, none of them by a timer.
    const stop = startKeepAlive(wss, 60_000, { slices: 4, schedule: (fn) => ((turn = fn), () => {}) });
    const pongs = { n: 0 };
    wss.on("connection", (socket) => socket.on("pong", () => pongs.n++));
    const port = (wss.address() as AddressInfo).port;
    try {
      // 8 sockets connected at once, the last one never answers.
      const clients = await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const socket = new WebSocket(`ws://127.0.0.1:${port}`, { autoPong: i < 7 });
          const seen = { pings: 0, closed: null as number | null };
          socket.on("ping", () => seen.pings++);
          socket.on("close", (code) => (seen.closed = code));
          await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
          return { socket, seen };
        }),
      );
      await expect.poll(() => wss.clients.size).toBe(8);
      const pinged = () => clients.reduce((n, c) => n + c.seen.pings, 0);
      // Each turn pings its slice only: two sockets of the eight.
      for (let k = 1; k <= 4; k++) {
        turn();
        await expect.poll(pinged).toBe(2 * k);
      }
      // One period: every socket pinged exactly once.
      expect(clients.map((c) => c.seen.pings)).toEqual(Array(8).fill(1));
      await expect.poll(() => pongs.n).toBe(7);
      // The next period: the silent socket is terminated at its slice's turn (1006), the others pinged again.
      for (let k = 1; k <= 4; k++) turn();
      await expect.poll(() => clients[7]!.seen.closed).toBe(1006);
      await expect.poll(pinged).toBe(8 + 7);
      expect(clients.slice(0, 7).map((c) => [c.seen.pings, c.socket.readyState])).toEqual(Array(7).fill([2, WebSocket.OPEN]));
      for (const c of clients) c.socket.close();
    } finally {
      stop();
      await new Promise((resolve) => wss.close(resolve));
    }
  });
});
