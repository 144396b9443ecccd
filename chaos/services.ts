import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, rmSync } from "node:fs";
import { userInfo } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

/**
 * The chaos run's own PostgreSQL 15 and Redis, on its own ports and under its
 * own directory, so they can be stopped, crashed and restarted without
 * touching the shared services. Started as user postgres when run as root
 * (PostgreSQL refuses to run as root).
 */

const run = promisify(execFile);
const PG_BIN = process.env.CHAOS_PG_BIN?.trim() || "/usr/lib/postgresql/15/bin";

function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
}

export class OwnPostgres {
  readonly dataDir: string;
  readonly logFile: string;
  constructor(
    readonly dir: string,
    readonly port: number,
  ) {
    this.dataDir = path.join(dir, "data");
    this.logFile = path.join(dir, "postgres.log");
  }

  /** postgresql://postgres@127.0.0.1:<port>/<database> */
  url(database = "postgres"): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/${database}`;
  }

  async init(): Promise<void> {
    await this.stop("immediate").catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
    chmodSync(this.dir, 0o755);
    if (process.getuid?.() === 0) {
      const { uid, gid } = await postgresIds();
      chownSync(this.dir, uid, gid);
    }
    const [cmd, args] = asPostgres(path.join(PG_BIN, "initdb"), ["-D", this.dataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
    await run(cmd, args, { timeout: 120_000 });
  }

  async start(): Promise<void> {
    const opts = [`-p ${this.port}`, `-k ${this.dir}`, "-c listen_addresses=127.0.0.1", "-c max_connections=200", "-c shared_buffers=64MB"].join(" ");
    const [cmd, args] = asPostgres(path.join(PG_BIN, "pg_ctl"), ["-D", this.dataDir, "-l", this.logFile, "-o", opts, "-w", "-t", "60", "start"]);
    await run(cmd, args, { timeout: 90_000 });
  }

  /** fast: clean shutdown (open sessions terminated); immediate: a crash (recovery from WAL at start). */
  async stop(mode: "fast" | "immediate"): Promise<void> {
    const [cmd, args] = asPostgres(path.join(PG_BIN, "pg_ctl"), ["-D", this.dataDir, "-m", mode, "-w", "-t", "60", "stop"]);
    await run(cmd, args, { timeout: 90_000 });
  }
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const { stdout: uid } = await run("id", ["-u", "postgres"]);
  const { stdout: gid } = await run("id", ["-g", "postgres"]);
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

/**
 * Redis as a child process with RDB snapshots taken on demand (BGSAVE), and
 * no AOF: a restart comes back from the last snapshot, so whatever was
 * written or deleted since (a cache invalidation, say) is undone, as after a
 * crash or a failover to a lagging replica.
 */
export class OwnRedis {
  private proc: ChildProcess | undefined;
  constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  url(db = 0): string {
    return `redis://127.0.0.1:${this.port}/${db}`;
  }

  init(): void {
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
  }

  /** Started again when it exits at once (its port still held, e.g. by a snapshot child of the killed one). */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.startOnce();
      } catch (err) {
        if (attempt >= 10) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private async startOnce(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--logfile", path.join(this.dir, "redis.log")];
    if (userInfo().uid === 0) args.push("--protected-mode", "no");
    const proc = spawn("redis-server", args, { stdio: "ignore" });
    this.proc = proc;
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode} (see ${this.dir}/redis.log)`);
      if (await this.cli("PING").then((r) => r === "PONG", () => false)) return;
      if (Date.now() > deadline) throw new Error("redis-server did not answer PING within 30 s");
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGKILL: nothing saved; the next start loads the last snapshot. */
  async kill(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
  }

  async snapshot(): Promise<void> {
    await this.cli("BGSAVE");
  }

  private async cli(...args: string[]): Promise<string> {
    const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(this.port), ...args], { timeout: 5_000 });
    return stdout.trim();
  }
}
