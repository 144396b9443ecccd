import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./server-process.ts";

/**
 * A Redis server of the test's own (never the shared one), for faults:
 * killed, restarted from its dump file, stopped. It runs in the foreground
 * as a child process, on a free port, with its dump in a temporary
 * directory; nothing is saved except by `save()` (SAVE), so a restart loads
 * exactly the dump the test took.
 */
export interface OwnRedis {
  url: string;
  /** A client of the test's own (it reconnects by itself after a restart). */
  client: Redis;
  /** SAVE: the dump a later restart will load. */
  save(): Promise<void>;
  /** Kills the server (SIGKILL: nothing saved at exit), leaving it down. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory (it loads the last dump) and waits until it answers. */
  start(): Promise<void>;
  /** kill() then start(): a crash and a restart from the dump. */
  restartFromDump(): Promise<void>;
  /** Sends `signal` to the server: SIGSTOP hangs it (connections accepted by the kernel, nothing answered), SIGCONT lets it go on. */
  signal(signal: NodeJS.Signals): void;
  /** Kills it and removes its directory. */
  close(): Promise<void>;
}

/** `ask` on a one-off connection to the Redis on `port`; false when it does not answer (refused, LOADING, an error). */
export async function probeRedis(port: number, ask: (r: Redis) => Promise<boolean>): Promise<boolean> {
  const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  probe.on("error", () => {});
  try {
    await probe.connect();
    return await ask(probe);
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

/** Whether a Redis on this port answers PING (it answers LOADING while it reads the dump). */
export const answers = (port: number) => probeRedis(port, async (r) => (await r.ping()) === "PONG");

export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), "tg-redis-"));
  let child: ChildProcess | undefined;

  const start = async () => {
    const proc = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
    child = proc;
    for (let i = 0; !(await answers(port)); i++) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`);
      if (i > 200) throw new Error("redis-server did not start");
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const kill = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
  };

  await start();
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url);
  client.on("error", () => {});
  return {
    url,
    client,
    save: async () => void (await client.save()),
    signal: (sig) => void child?.kill(sig),
    kill,
    start,
    async restartFromDump() {
      await kill();
      await start();
    },
    async close() {
      client.disconnect();
      child?.kill("SIGCONT");
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
