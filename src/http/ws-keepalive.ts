import type { WebSocket, WebSocketServer } from "ws";

/**
 * The WebSockets' keep-alive (docs/live-updates.md, "Transports"): each
 * socket is pinged once every `periodMs`, and cut (terminated) when it has
 * not answered the previous ping by the time the next one is due.
 * graphql-ws's own keep-alive (turned off in websocket.ts) gave every
 * socket an interval, and every ping a timeout and a `pong` listener of its
 * own.
 *
 * One timer for the whole server, in slices: the period is cut into
 * `slices` turns, a socket belongs to one slice (the one with the fewest
 * sockets when it connects), and each turn pings only its slice's sockets.
 * Sockets that connect together (a bench's 1,000 streams, every client of a
 * replica reconnecting after a restart) are pinged a turn apart, not in one
 * burst of hundreds of pings and then of hundreds of pongs every period
 * that a request waits behind (docs/live-updates.md, "Sixth round"). A
 * socket's first ping comes at its slice's first turn, at most one period
 * after it connected.
 *
 * Only a pong answers a ping: a delivery is written to the socket by the
 * server, and a peer that is gone still lets the kernel take those bytes.
 */

export interface KeepAliveOptions {
  /** Turns per period (default: one every 100 ms, at least 1). */
  slices?: number;
  /** Runs `turn` every `everyMs`; returns the stop. Default setInterval (unref'd); tests turn the slices by hand. */
  schedule?: (turn: () => void, everyMs: number) => () => void;
}

const intervalOf = (turn: () => void, everyMs: number) => {
  const timer = setInterval(turn, everyMs);
  timer.unref();
  return () => clearInterval(timer);
};

export function startKeepAlive(wss: WebSocketServer, periodMs: number, options: KeepAliveOptions = {}): () => void {
  const count = Math.max(1, options.slices ?? Math.floor(periodMs / 100));
  const slices = Array.from({ length: count }, () => new Set<WebSocket>());
  const waiting = new WeakSet<WebSocket>();
  const onConnection = (socket: WebSocket) => {
    let slice = slices[0]!;
    for (const s of slices) if (s.size < slice.size) slice = s;
    slice.add(socket);
    socket.on("pong", () => waiting.delete(socket));
    socket.once("close", () => slice.delete(socket));
  };
  wss.on("connection", onConnection);
  let next = 0;
  const stop = (options.schedule ?? intervalOf)(() => {
    const slice = slices[next]!;
    next = (next + 1) % count;
    for (const socket of slice) {
      if (socket.readyState !== socket.OPEN) continue;
      if (waiting.has(socket)) {
        socket.terminate();
        continue;
      }
      waiting.add(socket);
      socket.ping();
    }
  }, periodMs / count);
  return () => {
    stop();
    wss.off("connection", onConnection);
  };
}
