import { int } from "../bench/options.ts";

/**
 * The chaos run's settings, from CHAOS_* variables. Every default gives the
 * run of issue 12 point 9 (10 minutes, two replicas, faults every 12-36 s);
 * CHAOS_DURATION_S=60 gives a quick trial of the harness itself.
 */

export interface ChaosOptions {
  durationS: number;
  /** Seed of every random choice (load mix, callers, fault times and kinds). */
  seed: number;
  clients: number;
  /** Pause of each client between two requests, ms (uniform in [min, max]). */
  thinkMs: [number, number];
  /** Gap between two faults, s (uniform in [min, max]). */
  faultGapS: [number, number];
  /** How long Redis or PostgreSQL stays down in a restart, s (uniform). */
  downS: [number, number];
  /** Interval of the Redis snapshots a restart comes back from, s. */
  snapshotEveryS: number;
  /** Fault kinds to inject (default all). */
  faults: FaultKind[];
  tenants: number;
  projectsPerTenant: number;
  deploymentsPerProject: number;
  /** Client-side timeout: a request unanswered after it is a hang. */
  timeoutMs: number;
  /** Own services: PostgreSQL, Redis and the two replicas' ports. */
  pgPort: number;
  redisPort: number;
  replicaPorts: [number, number];
  /** Where PostgreSQL's and Redis's data and the replicas' logs go. */
  workDir: string;
  /** Drain time given to a replica on SIGTERM (the server's SHUTDOWN_DRAIN_MS). */
  drainMs: number;
  jwtSecret: string;
  /** Where the JSON and Markdown summaries are written. */
  resultsDir: string;
}

export const FAULT_KINDS = ["redis-restart", "pg-restart", "pg-crash", "replica-restart"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** "a-b" or "a": a range of non-negative numbers. */
function range(env: NodeJS.ProcessEnv, name: string, fallback: [number, number]): [number, number] {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const m = /^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$/.exec(raw);
  if (!m) throw new Error(`${name}: expected "min-max" or a number, got "${raw}"`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (b < a) throw new Error(`${name}: max below min in "${raw}"`);
  return [a, b];
}

export function chaosOptions(env: NodeJS.ProcessEnv = process.env): ChaosOptions {
  const faults = (env.CHAOS_FAULTS?.split(",").map((s) => s.trim()).filter(Boolean) ?? [...FAULT_KINDS]) as FaultKind[];
  for (const f of faults) {
    if (!FAULT_KINDS.includes(f)) throw new Error(`CHAOS_FAULTS: unknown fault "${f}" (known: ${FAULT_KINDS.join(", ")})`);
  }
  const pgPort = int(env, "CHAOS_PG_PORT", 5453, 1);
  const redisPort = int(env, "CHAOS_REDIS_PORT", 6393, 1);
  const httpPort = int(env, "CHAOS_HTTP_PORT", 4101, 1);
  return {
    durationS: int(env, "CHAOS_DURATION_S", 600, 10),
    seed: int(env, "CHAOS_SEED", 12),
    clients: int(env, "CHAOS_CLIENTS", 10, 1),
    thinkMs: range(env, "CHAOS_THINK_MS", [50, 200]),
    faultGapS: range(env, "CHAOS_FAULT_GAP_S", [12, 36]),
    downS: range(env, "CHAOS_DOWN_S", [1, 6]),
    snapshotEveryS: int(env, "CHAOS_SNAPSHOT_S", 10, 1),
    faults,
    tenants: int(env, "CHAOS_TENANTS", 40, 3),
    projectsPerTenant: int(env, "CHAOS_PROJECTS", 4, 1),
    deploymentsPerProject: int(env, "CHAOS_DEPLOYMENTS", 6, 1),
    timeoutMs: int(env, "CHAOS_TIMEOUT_MS", 10_000, 100),
    pgPort,
    redisPort,
    replicaPorts: [httpPort, httpPort + 1],
    workDir: env.CHAOS_WORK_DIR?.trim() || `/tmp/tenantgraph-chaos-${pgPort}`,
    drainMs: int(env, "CHAOS_DRAIN_MS", 10_000, 0),
    jwtSecret: "chaos-secret-0123456789abcdef0123456789abcdef",
    resultsDir: env.CHAOS_RESULTS_DIR?.trim() || "bench/results",
  };
}
