import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { attachWebSocket } from "../../src/http/websocket.ts";
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
