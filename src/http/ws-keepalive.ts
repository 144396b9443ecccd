import type { WebSocket, WebSocketServer } from "ws";
import { Sweep, type SweepOptions } from "./sweep.ts";

/**
 * The WebSockets' keep-alive (docs/live-updates.md, "Transports"): each
 * socket is pinged once every `periodMs`, and cut (terminated) when it has
 * not answered the previous ping by the time the next one is due.
 * graphql-ws's own keep-alive (turned off in websocket.ts) gave every
 * socket an interval, and every ping a timeout and a `pong` listener of its
 * own. One timer for the whole server, turning through slices of the
 * period (src/http/sweep.ts).
 *
 * Only a pong answers a ping: a delivery is written to the socket by the
 * server, and a peer that is gone still lets the kernel take those bytes.
 */
export function startKeepAlive(wss: WebSocketServer, periodMs: number, options: SweepOptions = {}): () => void {
  const waiting = new WeakSet<WebSocket>();
  const sweep = new Sweep<WebSocket>(
    periodMs,
    (socket) => {
      if (socket.readyState !== socket.OPEN) return;
      if (waiting.has(socket)) {
        socket.terminate();
        return;
      }
      waiting.add(socket);
      socket.ping();
    },
    options,
  );
  const onConnection = (socket: WebSocket) => {
    const remove = sweep.add(socket);
    socket.on("pong", () => waiting.delete(socket));
    socket.once("close", remove);
  };
  wss.on("connection", onConnection);
  return () => {
    sweep.close();
    wss.off("connection", onConnection);
  };
}
