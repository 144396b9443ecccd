import type { WebSocket, WebSocketServer } from "ws";

/**
 * The WebSockets' keep-alive (docs/live-updates.md, "Transports"): each
 * socket is pinged every `periodMs` from its connection on, and cut
 * (terminated) when it has not answered the previous ping by the time the
 * next one is due. One timer for the whole server walks the sockets every
 * `tickMs` and pings those whose time has come, so the pings stay spread
 * over the period as the sockets connected. graphql-ws's own keep-alive
 * (turned off in websocket.ts) gave every socket an interval, and every
 * ping a timeout and a `pong` listener of its own.
 *
 * Only a pong answers a ping: a delivery is written to the socket by the
 * server, and a peer that is gone still lets the kernel take those bytes.
 */
export function startKeepAlive(wss: WebSocketServer, periodMs: number, tickMs = Math.min(1_000, periodMs)): () => void {
  const state = new WeakMap<WebSocket, { due: number; waiting: boolean }>();
  const onConnection = (socket: WebSocket) => {
    const entry = { due: Date.now() + periodMs, waiting: false };
    state.set(socket, entry);
    socket.on("pong", () => {
      entry.waiting = false;
    });
  };
  wss.on("connection", onConnection);
  const timer = setInterval(() => {
    const now = Date.now();
    for (const socket of wss.clients) {
      const entry = state.get(socket);
      if (!entry || entry.due > now || socket.readyState !== socket.OPEN) continue;
      if (entry.waiting) {
        socket.terminate();
        continue;
      }
      entry.waiting = true;
      entry.due = now + periodMs;
      socket.ping();
    }
  }, tickMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    wss.off("connection", onConnection);
  };
}
