import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "../infra/logger.ts";

/**
 * The HTTP server of the process, and its drain (SPEC section 10): it knows
 * the requests not yet answered, so a shutdown can wait for them (up to
 * SHUTDOWN_DRAIN_MS) and say how many it cut.
 */
export interface DrainableServer {
  server: Server;
  /** Requests not yet answered. */
  readonly inFlight: ReadonlySet<ServerResponse>;
  /** Draining from now on: every answer closes its connection (a keep-alive client reconnects elsewhere). */
  startDraining(): void;
  /** Stops listening and waits for the in-flight requests, cutting those left after `drainMs`. */
  drain(drainMs: number, logger: Logger): Promise<void>;
}

export function createDrainableServer(handle: (req: IncomingMessage, res: ServerResponse) => void): DrainableServer {
  const inFlight = new Set<ServerResponse>();
  let draining = false;
  const server = createServer((req, res) => {
    inFlight.add(res);
    res.once("close", () => inFlight.delete(res));
    if (draining) res.setHeader("connection", "close");
    handle(req, res);
  });
  return {
    server,
    inFlight,
    startDraining() {
      draining = true;
      for (const res of inFlight) if (!res.headersSent) res.setHeader("connection", "close");
    },
    async drain(drainMs, logger) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // A connection that turns idle during the drain (its response sent) is closed too.
      const sweep = setInterval(() => server.closeIdleConnections(), 50);
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), drainMs)))]);
      clearTimeout(timer);
      clearInterval(sweep);
      if (!drained) {
        logger.warn({ cut: inFlight.size }, "drain timeout: closing the remaining connections");
        server.closeAllConnections();
        await closed;
      }
    },
  };
}
