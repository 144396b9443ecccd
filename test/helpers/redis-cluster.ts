import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { loadConfig, redisTarget, type RedisClusterNode, type RedisTarget } from "../../src/config.ts";
import { answers, probeRedis } from "./own-redis.ts";
import { freePort } from "./server-process.ts";

const run = promisify(execFile);

/**
 * The Redis of the tests: REDIS_CLUSTER_NODES (a cluster; `npm run test:cluster`)
 * or REDIS_URL, read as the server reads them; undefined: the in-process store.
 */
export function testRedisTarget(): RedisTarget | undefined {
  const { REDIS_URL, REDIS_CLUSTER_NODES } = process.env;
  return redisTarget(loadConfig({ ...(REDIS_CLUSTER_NODES ? { REDIS_CLUSTER_NODES } : { REDIS_URL }) }));
}

/** The same Redis for a server process the test starts: REDIS_CLUSTER_NODES or REDIS_URL. */
export function testRedisEnv(): Record<string, string> {
  const { REDIS_URL, REDIS_CLUSTER_NODES } = process.env;
  return REDIS_CLUSTER_NODES ? { REDIS_CLUSTER_NODES } : REDIS_URL ? { REDIS_URL } : {};
}

/**
 * A local Redis Cluster of the test's own: `masters` redis-server processes
 * in cluster mode (no replicas), joined by `redis-cli --cluster create`
 * (every slot assigned), started in the foreground as children and stopped
 * by close(). Ports are `ports` (CI's fixed ones) or free ones; the cluster
 * bus gets free ports of its own (`--cluster-port`), not port + 10000.
 */
export interface OwnRedisCluster {
  nodes: RedisClusterNode[];
  /** REDIS_CLUSTER_NODES for a child process. */
  env: string;
  /** SIGKILLs the master on `port` (a node failure; it stays down). */
  kill(port: number): Promise<void>;
  close(): Promise<void>;
}

const clusterOk = (port: number) => probeRedis(port, async (r) => /cluster_state:ok/.test(await r.cluster("INFO")));

async function waitFor(what: string, ok: () => Promise<boolean>, children: ChildProcess[]) {
  for (let i = 0; !(await ok()); i++) {
    const dead = children.find((c) => c.exitCode !== null);
    if (dead) throw new Error(`redis-server (cluster) exited with ${dead.exitCode}`);
    if (i > 400) throw new Error(`${what}: not within 10 s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Whether every node of `nodes` answers with cluster_state:ok. */
export async function clusterAnswers(nodes: readonly RedisClusterNode[]): Promise<boolean> {
  return (await Promise.all(nodes.map((n) => clusterOk(n.port)))).every(Boolean);
}

/**
 * `nodeTimeoutMs`: cluster-node-timeout (default Redis' 15 s); with
 * `fullCoverage: false` the surviving masters keep serving their slots when
 * one fails (cluster-require-full-coverage no, docs/scale-out.md).
 */
export async function startRedisCluster(
  opts: { ports?: number[]; masters?: number; nodeTimeoutMs?: number; fullCoverage?: boolean } = {},
): Promise<OwnRedisCluster> {
  const ports = opts.ports ?? (await Promise.all(Array.from({ length: opts.masters ?? 3 }, () => freePort())));
  const dir = await mkdtemp(path.join(tmpdir(), "tg-redis-cluster-"));
  const children: ChildProcess[] = [];
  const stop = (c: ChildProcess) => {
    if (c.exitCode !== null || c.signalCode !== null) return undefined;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    return exited;
  };
  const close = async () => {
    await Promise.all(children.map(stop));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      const busPort = await freePort();
      const child = spawn(
        "redis-server",
        [
          "--port", String(port), "--cluster-port", String(busPort), "--bind", "127.0.0.1",
          "--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`, "--dir", dir,
          "--save", "", "--appendonly", "no",
          ...(opts.nodeTimeoutMs ? ["--cluster-node-timeout", String(opts.nodeTimeoutMs)] : []),
          ...(opts.fullCoverage === false ? ["--cluster-require-full-coverage", "no"] : []),
        ],
        { stdio: "ignore" },
      );
      children.push(child);
    }
    await waitFor("redis-server (cluster) start", async () => (await Promise.all(ports.map(answers))).every(Boolean), children);
    await run("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"]);
    const nodes = ports.map((port) => ({ host: "127.0.0.1", port }));
    await waitFor("cluster_state:ok", () => clusterAnswers(nodes), children);
    return {
      nodes,
      env: nodes.map((n) => `${n.host}:${n.port}`).join(","),
      kill: async (port) => void (await stop(children[ports.indexOf(port)]!)),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
