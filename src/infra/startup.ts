import pg from "pg";
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
export async function checkRedis(store: RedisStore, url: string, timeoutMs = 5000): Promise<void> {
  if (await store.ready(timeoutMs)) return;
  const reason = /ECONNREFUSED/.test(store.lastError) ? "connection refused" : store.lastError || "no answer";
  throw new StartupError(
    `cannot reach Redis at REDIS_URL (${describeUrl(url)}): ${reason}. Start it or fix REDIS_URL, or unset REDIS_URL to use the in-process store (single instance only).`,
  );
}
