import { ConfigError } from "../src/config/env.ts";
import { redisKeyPrefix } from "../src/config/redis-key-prefix.ts";
/**
 * The benchmark's own settings (the server's are read by src/config.ts; the
 * bench only decides what to pass it). Every knob has a default that gives
 * the run of SPEC section 9: 3 runs x 15 s after a 3 s warm-up, 32 connections.
 */

export interface BenchOptions {
  databaseUrl: string;
  redisUrl: string;
  /** REDIS_KEY_PREFIX (validated as the server does): the server's keys, and every key the bench reads or clears, under it (none when absent). */
  redisKeyPrefix?: string;
  /** Name of the database the bench drops and recreates. */
  database: string;
  runs: number;
  durationS: number;
  warmupS: number;
  connections: number;
  lowConnections: number;
  /** Ports: server, floor, and the statement-counting instances. */
  port: number;
  tenants: number;
  projectsPerTenant: number;
  deploymentsPerProject: number;
  workflowsPerTenant: number;
  /** Noisy neighbour: its API_REQUESTS_PER_MINUTE (FREE's 100 by default), hammered at 10x. */
  noisyLimitPerMinute: number;
  /** Sequential requests per scenario when counting statements. */
  countRequests: number;
  /** Only these scenarios (comma-separated ids), for quick trials. */
  only: string[] | undefined;
  /** Open subscription streams of the live scenario, and its mutations per second. */
  liveStreams?: number;
  liveMutationsPerS?: number;
  /** writer-32 / live-32 pairs per run, interleaved (bench/live-pairs.ts). */
  livePairs?: number;
  /** Deployments of each neighbour-scenario tenant (bench/neighbours.ts). */
  bulkDeployments?: number;
  jwtSecret: string;
}

export function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min = 1): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected an integer >= ${min}, got "${raw}"`);
  return n;
}

export class RefusedError extends Error {}

export function benchOptions(env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const databaseUrl = env.DATABASE_URL?.trim();
  const redisUrl = env.REDIS_URL?.trim();
  const missing = [!databaseUrl && "DATABASE_URL", !redisUrl && "REDIS_URL"].filter(Boolean);
  if (missing.length) {
    throw new RefusedError(
      [
        `npm run bench needs ${missing.join(" and ")}.`,
        `Without them the server falls back to the embedded PostgreSQL and the in-process store: a`,
        `single-process toy topology (no shared rate-limit counters, a second PostgreSQL on the same`,
        `cores), so its figures would say nothing about a deployment. The bench also creates and drops`,
        `its own database on that server. Example:`,
        `  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379 npm run bench`,
      ].join("\n"),
    );
  }
  return {
    databaseUrl: databaseUrl!,
    redisUrl: redisUrl!,
    redisKeyPrefix: redisKeyPrefix(env),
    database: env.BENCH_DATABASE?.trim() || "tenantgraph_bench",
    runs: int(env, "BENCH_RUNS", 3),
    durationS: int(env, "BENCH_DURATION", 15),
    warmupS: int(env, "BENCH_WARMUP", 3, 0),
    connections: int(env, "BENCH_CONNECTIONS", 32),
    lowConnections: int(env, "BENCH_LOW_CONNECTIONS", 8),
    port: int(env, "BENCH_PORT", 4100),
    tenants: int(env, "BENCH_TENANTS", 100, 2),
    projectsPerTenant: int(env, "BENCH_PROJECTS", 20),
    deploymentsPerProject: int(env, "BENCH_DEPLOYMENTS", 50),
    workflowsPerTenant: int(env, "BENCH_WORKFLOWS", 10),
    noisyLimitPerMinute: int(env, "BENCH_NOISY_LIMIT", 100),
    countRequests: int(env, "BENCH_COUNT_REQUESTS", 40),
    liveStreams: int(env, "BENCH_LIVE_STREAMS", 1000, 0),
    livePairs: int(env, "BENCH_LIVE_PAIRS", 3),
    // 0: the streams idle (their keep-alives, leases and re-checks without events): the pairs then measure their presence alone.
    liveMutationsPerS: int(env, "BENCH_LIVE_MUTATIONS", 10, 0),
    bulkDeployments: int(env, "BENCH_BULK_DEPLOYMENTS", 50_000),
    only: env.BENCH_ONLY?.split(",").map((s) => s.trim()).filter(Boolean),
    jwtSecret: "bench-secret-0123456789abcdef0123456789abcdef",
  };
}

/** The same server, another database: swaps the path of a PostgreSQL URL. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** benchOptions(), or the refusal printed and exit code 2 (for the bench scripts' main). */
export function benchOptionsOrExit(): BenchOptions {
  try {
    return benchOptions();
  } catch (err) {
    if (err instanceof RefusedError || err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
}

/** A bench script's entry: exit 0 once `main` resolves, 1 (its error printed) if it throws. */
export function runMain(main: () => Promise<unknown>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
