import { execSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { BenchOptions } from "./options.ts";
import { ADMIN_SUBJECT } from "./seed.ts";

/** The server and the floor as child processes of the bench. */

export const ROOT = path.resolve(import.meta.dirname, "..");

/** The server as the bench runs it: production mode, no migrations or seed at start. */
export function serverEnv(opts: BenchOptions, databaseUrl: string): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    REDIS_URL: opts.redisUrl,
    REDIS_KEY_PREFIX: opts.redisKeyPrefix ?? "",
    MIGRATE_ON_START: "false",
    SEED_ON_START: "false",
    LOG_LEVEL: "warn",
    JWT_SECRET: opts.jwtSecret,
    NODE_ENV: "production",
    GRAPHIQL: "false",
    PLATFORM_ADMIN_SUBJECTS: ADMIN_SUBJECT,
  };
}

export function floorEnv(opts: BenchOptions, databaseUrl: string): Record<string, string> {
  return { DATABASE_URL: databaseUrl, JWT_SECRET: opts.jwtSecret, NODE_ENV: "production" };
}

export interface Child {
  name: string;
  port: number;
  proc: ChildProcess;
  /** Last lines of its output, shown if it dies. */
  output: string[];
  stop(): Promise<void>;
}

/**
 * The environment and V8 flags the start script gives the server
 * (package.json: `start:prod` for the compiled server, `start` through tsx),
 * so the bench measures the server as it is started in production.
 */
export function serverStart(root = ROOT): { env: Record<string, string>; flags: string[] } {
  const script = startScript(root, benchServer() === "dist" ? "start:prod" : "start");
  // BENCH_NODE_FLAGS="--max-old-space-size=224 --max-semi-space-size=32": other V8 flags than the script's, for A/B trials.
  const override = process.env.BENCH_NODE_FLAGS?.trim();
  return override ? { env: script.env, flags: override.split(/\s+/) } : script;
}

/** The V8 flags of `npm start` in the checkout at `root`. */
export function startScriptFlags(root: string): string[] {
  return startScript(root).flags;
}

/**
 * A start script of the checkout at `root` (`start`, `start:prod`): the
 * environment it sets before `node` (`NAME=value` words, e.g. malloc
 * settings) and the node flags it passes (`--import` and its module left out).
 */
export function startScript(root: string, script = "start"): { env: Record<string, string>; flags: string[] } {
  const text: string = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")).scripts[script];
  const words = text.trim().split(/\s+/);
  const node = words.indexOf("node");
  const env = Object.fromEntries(words.slice(0, node).map((w) => [w.slice(0, w.indexOf("=")), w.slice(w.indexOf("=") + 1)]));
  const flags = words.slice(node + 1).filter((w, i, all) => w.startsWith("--") && w !== "--import" && all[i - 1] !== "--import");
  return { env, flags };
}

export function startChild(
  name: string,
  script: string,
  port: number,
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Child {
  const start = script === "src/server.ts" ? serverStart() : { env: {}, flags: [] };
  const flags = start.flags;
  // The server as production runs it (`npm run start:prod`): compiled by
  // `npm run build` (once per bench process, so dist/ is this checkout's
  // code) and run without a loader. BENCH_SERVER=tsx: through tsx, as `npm start`.
  const compiled = script === "src/server.ts" && benchServer() === "dist";
  if (compiled) buildOnce();
  const args = compiled ? [...flags, ...nodeArgs, "dist/server.js"] : [...flags, ...nodeArgs, "--import", "tsx", script];
  return spawnChild(name, args, ROOT, port, { ...start.env, ...env });
}

/** How the bench runs the server: `dist` (default, the production start) or `tsx` (`npm start`). */
export function benchServer(): "dist" | "tsx" {
  const value = process.env.BENCH_SERVER ?? "dist";
  if (value !== "dist" && value !== "tsx") throw new Error(`BENCH_SERVER=${value}: expected dist or tsx`);
  return value;
}

let built = false;
function buildOnce() {
  if (built) return;
  execSync("npm run -s build", { cwd: ROOT, stdio: "inherit" });
  built = true;
}

/** `node <args>` in `cwd` on `port`: its last 200 lines of output kept, stopped by SIGTERM (SIGKILL after 10 s). */
export function spawnChild(name: string, args: string[], cwd: string, port: number, env: Record<string, string>): Child {
  const proc = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const keep = (buf: Buffer) => {
    for (const line of buf.toString("utf8").split("\n")) if (line.trim()) output.push(line);
    if (output.length > 200) output.splice(0, output.length - 200);
  };
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  return {
    name,
    port,
    proc,
    output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        proc.once("exit", () => {
          clearTimeout(timer);
          resolve();
        });
        proc.kill("SIGTERM");
      }),
  };
}

export async function waitReady(child: Child, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.proc.exitCode !== null) {
      throw new Error(`${child.name} exited with code ${child.proc.exitCode}:\n${child.output.slice(-30).join("\n")}`);
    }
    try {
      const res = await fetch(`http://127.0.0.1:${child.port}/readyz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${child.name} not ready after ${timeoutMs} ms:\n${child.output.slice(-30).join("\n")}`);
}

/** Resident set size of a process, in MB (Linux /proc). */
export function rssMb(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Samples RSS every `everyMs` until stopped; returns the peak. */
export function sampleRss(pid: number, everyMs = 250) {
  let peak = rssMb(pid) ?? 0;
  const timer = setInterval(() => {
    const v = rssMb(pid);
    if (v !== undefined && v > peak) peak = v;
  }, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      return peak;
    },
  };
}

let clockTicks: number | undefined;

/**
 * A process's (or, with `tid`, one of its threads') counters from /proc so
 * far: user and system CPU in ms, minor page faults; undefined when gone.
 */
export function procStat(pid: number, tid?: number): { userMs: number; sysMs: number; minflt: number } | undefined {
  try {
    clockTicks ??= Number(execSync("getconf CLK_TCK", { encoding: "utf8" }).trim()) || 100;
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces): state is field 3, minflt 10, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { userMs: (Number(fields[11]) * 1000) / clockTicks, sysMs: (Number(fields[12]) * 1000) / clockTicks, minflt: Number(fields[7]) };
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used so far, in ms (Linux /proc). */
export function cpuMs(pid: number): number | undefined {
  const s = procStat(pid);
  return s && s.userMs + s.sysMs;
}
