import net from "node:net";

/**
 * Statements per request, counted on the wire.
 *
 * pg_stat_statements needs shared_preload_libraries (a server restart), and
 * pg_stat_database only counts transactions, flushed lazily. So the bench
 * puts this small TCP proxy between a dedicated server instance and
 * PostgreSQL and reads the frontend protocol: every simple Query ('Q') and
 * every Execute ('E') of the extended protocol is one statement that
 * PostgreSQL runs. Parse/Bind are followed to learn each statement's text, so
 * it can be classified, and the startup packet's `options` tells which role
 * the connection runs as (tenantgraph_app or tenantgraph_platform).
 *
 * It also counts the client's messages PostgreSQL answers with
 * ReadyForQuery: a simple Query ('Q'), or the Sync ('S') that ends an
 * extended-protocol sequence (a read's last statement and its COMMIT go
 * under one Sync: two statements, one message; docs/request-path.md).
 *
 * Only used for sequential counting requests, never under load: it is a
 * JavaScript hop on the same cores.
 */

export type StatementKind = "transaction" | "settings" | "data";

export interface StatementCounts {
  total: number;
  /** Client messages answered with ReadyForQuery (Query or Sync): round-trips to PostgreSQL. */
  messages: number;
  byKind: Record<StatementKind, number>;
  byRole: Record<string, number>;
  /** Data statements by their first words, to show what runs. */
  samples: Map<string, number>;
}

const emptyCounts = (): StatementCounts => ({
  total: 0,
  messages: 0,
  byKind: { transaction: 0, settings: 0, data: 0 },
  byRole: {},
  samples: new Map(),
});

export function classify(sql: string): StatementKind {
  const s = sql.trimStart().slice(0, 40).toUpperCase();
  // The server opens its read transaction with "BEGIN; SELECT set_config(...)" in one message.
  if (/^BEGIN;\s*SELECT SET_CONFIG\(/.test(s)) return "settings";
  if (/^(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|SAVEPOINT|RELEASE|END|DEALLOCATE)\b/.test(s)) return "transaction";
  if (/^SELECT SET_CONFIG\(/.test(s) || /^SET\b/.test(s)) return "settings";
  return "data";
}

function cstring(buf: Buffer, offset: number): [string, number] {
  const end = buf.indexOf(0, offset);
  return [buf.toString("utf8", offset, end), end + 1];
}

export class SqlCounter {
  private server: net.Server | undefined;
  counts = emptyCounts();

  constructor(
    private readonly upstreamHost: string,
    private readonly upstreamPort: number,
  ) {}

  reset() {
    this.counts = emptyCounts();
  }

  private record(role: string, sql: string) {
    const kind = classify(sql);
    this.counts.total++;
    this.counts.byKind[kind]++;
    this.counts.byRole[role] = (this.counts.byRole[role] ?? 0) + 1;
    if (kind === "data") {
      const head = sql.replace(/\s+/g, " ").trim().slice(0, 90);
      this.counts.samples.set(head, (this.counts.samples.get(head) ?? 0) + 1);
    }
  }

  async listen(): Promise<number> {
    this.server = net.createServer((client) => this.handle(client));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  close() {
    return new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private handle(client: net.Socket) {
    const upstream = net.connect(this.upstreamPort, this.upstreamHost);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    upstream.pipe(client);
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());

    let pending: Buffer = Buffer.alloc(0);
    let startup = true;
    let role = "unknown";
    const statements = new Map<string, string>();
    const portals = new Map<string, string>();

    client.on("data", (chunk: Buffer) => {
      upstream.write(chunk);
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      for (;;) {
        if (startup) {
          if (pending.length < 8) return;
          const len = pending.readInt32BE(0);
          if (pending.length < len) return;
          const code = pending.readInt32BE(4);
          if (code === 196608) {
            // StartupMessage: key\0value\0 ... \0
            const params: Record<string, string> = {};
            let off = 8;
            while (off < len - 1) {
              const [k, next] = cstring(pending, off);
              const [v, after] = cstring(pending, next);
              params[k] = v;
              off = after;
            }
            role = /role=(\S+)/.exec(params.options ?? "")?.[1] ?? params.user ?? "unknown";
            startup = false;
          } // else SSLRequest / GSSENCRequest: the real startup follows
          pending = pending.subarray(len);
          continue;
        }
        if (pending.length < 5) return;
        const type = String.fromCharCode(pending[0]!);
        const len = pending.readInt32BE(1);
        if (pending.length < len + 1) return;
        const body = pending.subarray(5, len + 1);
        if (type === "Q" || type === "S") this.counts.messages++;
        if (type === "Q") {
          this.record(role, cstring(body, 0)[0]);
        } else if (type === "P") {
          const [name, next] = cstring(body, 0);
          statements.set(name, cstring(body, next)[0]);
        } else if (type === "B") {
          const [portal, next] = cstring(body, 0);
          portals.set(portal, statements.get(cstring(body, next)[0]) ?? "?");
        } else if (type === "E") {
          this.record(role, portals.get(cstring(body, 0)[0]) ?? "?");
        }
        pending = pending.subarray(len + 1);
      }
    });
  }
}
