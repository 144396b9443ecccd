import pg from "pg";
import type { RedisTarget } from "../config.ts";
import { APP_ROLE, PLATFORM_ROLE, type Databases } from "../db/clients.ts";
import type { RedisStore } from "./store.ts";

/**
 * Start-up checks with plain answers: when a dependency cannot be used,
 * `npm start` prints one sentence naming it and the remedy, and exits
 * non-zero (src/server.ts), never a stack trace.
 */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartupError";
  }
}

/** host:port/database of a URL, never its credentials. */
export function describeUrl(raw: string): string {
  try {
    const u = new URL(raw);
    const db = u.pathname.replace(/^\//, "");
    return `${u.hostname}:${u.port || (u.protocol.startsWith("redis") ? 6379 : 5432)}${db ? `/${db}` : ""}`;
  } catch {
    return "(unparseable URL)";
  }
}

const PG_REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "unknown host",
  EAI_AGAIN: "host name lookup failed",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  "3D000": "the database does not exist",
  "28P01": "password authentication failed",
  "28000": "authentication refused",
  "57P03": "the server is starting up or shutting down",
};

/** Connects once to the PostgreSQL of DATABASE_URL; a StartupError says why not. */
export async function checkPostgres(url: string, timeoutMs = 5000): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT 1");
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const reason = (e.code && PG_REASONS[e.code]) ?? e.message?.split("\n")[0] ?? "unknown error";
    throw new StartupError(
      `cannot reach PostgreSQL at DATABASE_URL (${describeUrl(url)}): ${reason}. Start it or fix DATABASE_URL, or unset DATABASE_URL to use the embedded PostgreSQL.`,
    );
  } finally {
    await client.end().catch(() => {});
  }
}

/** Waits for the first Redis connection; a StartupError says why there is none. */
export async function checkRedis(store: RedisStore, target: RedisTarget, timeoutMs = 5000): Promise<void> {
  if (await store.ready(timeoutMs)) return;
  const reason = /ECONNREFUSED/.test(store.lastError) ? "connection refused" : store.lastError.replace(/\.+$/, "") || "no answer";
  const [name, where] =
    typeof target === "string" ? ["REDIS_URL", describeUrl(target)] : ["REDIS_CLUSTER_NODES", target.map((n) => `${n.host}:${n.port}`).join(",")];
  throw new StartupError(
    `cannot reach Redis at ${name} (${where}): ${reason}. Start it or fix ${name}, or unset ${name} to use the in-process store (single instance only).`,
  );
}

/**
 * Every pool of the server runs as the role it is meant to (tenantgraph_app
 * for the tiers and live, tenantgraph_platform for the platform): never as
 * the migrator, whom RLS may not bind. It catches a connection path that
 * drops the role switch, e.g. a PgBouncer told to ignore the `options`
 * startup parameter: the server then refuses to start rather than serve
 * tenants with wall 2 down (docs/scale-out.md, "PgBouncer").
 */
export async function checkServerRoles(db: Pick<Databases, "pools">): Promise<void> {
  for (const [name, pool] of Object.entries(db.pools)) {
    const expected = name === "platform" ? PLATFORM_ROLE : APP_ROLE;
    let role: string | undefined;
    try {
      role = (await pool.query<{ role: string }>("SELECT current_user AS role")).rows[0]?.role;
    } catch (err) {
      const message = (err as Error).message ?? String(err);
      const hint = /startup parameter/i.test(message)
        ? " Behind PgBouncer, give APP_DATABASE_URL and PLATFORM_DATABASE_URL (login users that switch role at login; docs/scale-out.md)."
        : "";
      throw new StartupError(`cannot open the ${name} pool: ${message.split("\n")[0]}.${hint}`);
    }
    if (role !== expected) {
      throw new StartupError(
        `the ${name} pool runs as "${role}", not ${expected}: row-level security would not bind it. Connect it as ${expected} (docs/database.md; behind PgBouncer, APP_DATABASE_URL and PLATFORM_DATABASE_URL, docs/scale-out.md).`,
      );
    }
  }
}
