import type pg from "pg";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { timeShareOf } from "../db/tier-pool.ts";
import type { TimeShare } from "../db/time-share.ts";

/**
 * Prometheus metrics, one Registry per app (so several apps in one process,
 * as in the tests, never share series). Per-tenant series carry the tenant
 * id as label `tenant` ("none" before a tenant is known): ids, never slugs or
 * names, and bounded by the number of tenants.
 */

export const NO_TENANT = "none";

/**
 * Why a query was not SQL-planned (src/graphql/sql-plan-compile.ts,
 * docs/sql-plans.md, "Fallbacks counted"): a fixed set, the `reason` of
 * `tenantgraph_sql_plan_total{outcome="fallback"}`.
 */
export type SqlPlanFallback =
  | "directive"
  | "operation"
  | "variables"
  | "undeclared"
  | "policy"
  | "denied"
  | "arguments"
  | "invalid"
  | "cursor"
  | "root"
  | "bound";
/** How a planned query got its statement: compiled for it, or bound from the compile cache. */
export type SqlPlanned = "compiled" | "cached";

/**
 * The planner's outcomes since the process started. planQuery is a function
 * of the schema, not of an app: it counts here, and each app's registry
 * reports what grew since that app was made (one app per server process in
 * production; in a test process, apps alive at the same time report the
 * same plannings, each from zero when it was made).
 */
const sqlPlanCounts = new Map<string, number>();

export function countSqlPlan(...[outcome, reason]: ["planned", SqlPlanned] | ["fallback", SqlPlanFallback]): void {
  const key = `${outcome} ${reason}`;
  sqlPlanCounts.set(key, (sqlPlanCounts.get(key) ?? 0) + 1);
}

/** Subscription events' results since the process started (src/http/use-live-delivery.ts): executed for the subscriber, or shared from its class's execution. */
const liveResults = { executed: 0, shared: 0 };
export const countLiveResult = (outcome: keyof typeof liveResults): void => void liveResults[outcome]++;

/** Subscription results sent since the process started: by the stream's own writer (src/http/live-writers.ts) or through the transport's pipeline. */
const liveWrites = { writer: 0, pipeline: 0 };
export const countLiveWrite = (via: keyof typeof liveWrites): void => void liveWrites[via]++;

export interface MetricsOptions {
  /** PostgreSQL pools to expose as gauges, by name. */
  pools?: Record<string, pg.Pool | undefined>;
  /** @default true */
  defaultMetrics?: boolean;
  /** A Directory (src/tenancy/directory.ts) whose cache lookups are counted. */
  directory?: { onCacheLookup?: (key: string, hit: boolean) => void };
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"tenant" | "status">;
  private readonly errors: Counter<"tenant" | "code">;
  private readonly latency: Histogram<"tenant">;
  private readonly rateLimited: Counter<"tenant">;
  private readonly quotaRejected: Counter<"tenant">;
  private readonly cacheHits: Counter<"cache" | "tenant">;
  private readonly cacheMisses: Counter<"cache" | "tenant">;
  private readonly tenantStorage: Gauge<"tenant">;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: "tenantgraph_requests_total",
      help: "HTTP requests, by tenant and status code",
      labelNames: ["tenant", "status"],
      registers,
    });
    this.errors = new Counter({
      name: "tenantgraph_errors_total",
      help: "GraphQL errors, by tenant and extensions.code",
      labelNames: ["tenant", "code"],
      registers,
    });
    this.latency = new Histogram({
      name: "tenantgraph_request_duration_seconds",
      help: "Request latency in seconds, by tenant",
      labelNames: ["tenant"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.rateLimited = new Counter({
      name: "tenantgraph_rate_limit_rejections_total",
      help: "Requests refused with RATE_LIMITED, by tenant",
      labelNames: ["tenant"],
      registers,
    });
    this.quotaRejected = new Counter({
      name: "tenantgraph_quota_rejections_total",
      help: "Mutations refused with QUOTA_EXCEEDED, by tenant",
      labelNames: ["tenant"],
      registers,
    });
    this.cacheHits = new Counter({
      name: "tenantgraph_cache_hits_total",
      help: "Directory cache hits, by cache and tenant",
      labelNames: ["cache", "tenant"],
      registers,
    });
    this.cacheMisses = new Counter({
      name: "tenantgraph_cache_misses_total",
      help: "Directory cache misses, by cache and tenant",
      labelNames: ["cache", "tenant"],
      registers,
    });
    this.tenantStorage = new Gauge({
      name: "tenantgraph_tenant_storage_bytes",
      help: "Bytes of each tenant's rows (pg_column_size), as last measured in the background",
      labelNames: ["tenant"],
      registers,
    });
    const counted = new Map(sqlPlanCounts);
    new Counter({
      name: "tenantgraph_sql_plan_total",
      help: "Query operations offered to the SQL planner: outcome planned (reason compiled or cached) or fallback (executed as usual; reason: directive, operation, variables, undeclared, policy, denied, arguments, invalid, cursor, root, bound)",
      labelNames: ["outcome", "reason"],
      registers,
      collect() {
        for (const [key, n] of sqlPlanCounts) {
          const [outcome, reason] = key.split(" ") as [string, string];
          this.inc({ outcome, reason }, n - (counted.get(key) ?? 0));
          counted.set(key, n);
        }
      },
    });
    const processCounter = <K extends string>(name: string, help: string, label: string, counts: Record<K, number>) => {
      const counted = { ...counts };
      new Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          for (const key of Object.keys(counts) as K[]) this.inc({ [label]: key }, counts[key] - counted[key]);
          Object.assign(counted, counts);
        },
      });
    };
    processCounter(
      "tenantgraph_live_results_total",
      "Subscription events' results: outcome executed (the selection run for the subscriber) or shared (the result of an equal subscriber's execution)",
      "outcome",
      liveResults,
    );
    processCounter(
      "tenantgraph_live_writes_total",
      "Subscription results sent: via writer (framed and handed to the socket by the stream's own writer) or pipeline (through the SSE processor or graphql-ws: errors, and a stream's results after one)",
      "via",
      liveWrites,
    );
    const pools = Object.entries(opts.pools ?? {}).filter((e): e is [string, pg.Pool] => !!e[1]);
    if (pools.length) {
      new Gauge({
        name: "tenantgraph_db_pool_connections",
        help: "PostgreSQL pool connections, by pool and state (total, idle, waiting = queued clients; share_waiting = those of them queued because the pool spent its time share)",
        labelNames: ["pool", "state"],
        registers,
        collect() {
          for (const [name, pool] of pools) {
            this.set({ pool: name, state: "total" }, pool.totalCount);
            this.set({ pool: name, state: "idle" }, pool.idleCount);
            this.set({ pool: name, state: "waiting" }, pool.waitingCount);
            const share = timeShareOf(pool);
            if (share) this.set({ pool: name, state: "share_waiting" }, share.shareWaiting);
          }
        },
      });
      const shares = pools.flatMap(([name, pool]) => (timeShareOf(pool) ? [[name, timeShareOf(pool)!] as const] : []));
      if (shares.length) timeShareMetrics(shares, registers);
    }
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    if (opts.directory) opts.directory.onCacheLookup = (key, hit) => this.cacheLookup(key, hit);
  }

  observeRequest(tenant: string | undefined, status: number, seconds: number) {
    const t = tenant ?? NO_TENANT;
    this.requests.inc({ tenant: t, status: String(status) });
    this.latency.observe({ tenant: t }, seconds);
  }

  recordError(tenant: string | undefined, code: string) {
    const t = tenant ?? NO_TENANT;
    this.errors.inc({ tenant: t, code });
    if (code === "RATE_LIMITED") this.rateLimited.inc({ tenant: t });
    if (code === "QUOTA_EXCEEDED") this.quotaRejected.inc({ tenant: t });
  }

  /** The storage refresher's values (src/modules/storage/): every tenant's series replaced. */
  setTenantStorage(tenants: { id: string; bytes: number }[]) {
    this.tenantStorage.reset();
    for (const t of tenants) this.tenantStorage.set({ tenant: t.id }, t.bytes);
  }

  cacheHit(name: string, tenant?: string) {
    this.cacheHits.inc({ cache: name, tenant: tenant ?? NO_TENANT });
  }

  cacheMiss(name: string, tenant?: string) {
    this.cacheMisses.inc({ cache: name, tenant: tenant ?? NO_TENANT });
  }

  /** Directory cache keys: `t:{<tenant>}:<cache>:...` or `<cache>:...`. */
  cacheLookup(key: string, hit: boolean) {
    const scoped = /^t:\{([^}]+)\}:([^:]+)/.exec(key);
    const name = scoped ? scoped[2]! : key.split(":", 1)[0]!;
    const tenant = scoped ? scoped[1] : undefined;
    if (hit) this.cacheHit(name, tenant);
    else this.cacheMiss(name, tenant);
  }
}

/** The time shares' series (src/db/time-share.ts): the balance, and the waits and timeouts since start. */
function timeShareMetrics(shares: (readonly [string, TimeShare])[], registers: Registry[]) {
  new Gauge({
    name: "tenantgraph_db_pool_share_balance_ms",
    help: "Connection-milliseconds a time-shared pool may still hold before its acquisitions wait (negative: in debt)",
    labelNames: ["pool"],
    registers,
    collect() {
      for (const [pool, share] of shares) this.set({ pool }, share.balanceMs);
    },
  });
  // Counters read from the share's own totals: each collection adds what grew since the last.
  const counted = (name: string, help: string, value: (s: TimeShare) => number) => {
    const last = new Map<string, number>();
    new Counter({
      name,
      help,
      labelNames: ["pool"],
      registers,
      collect() {
        for (const [pool, share] of shares) {
          const v = value(share);
          this.inc({ pool }, Math.max(0, v - (last.get(pool) ?? 0)));
          last.set(pool, v);
        }
      },
    });
  };
  counted("tenantgraph_db_pool_share_waits_total", "Connection acquisitions that waited because their pool had spent its time share", (s) => s.stats.shareWaits);
  counted("tenantgraph_db_pool_share_wait_seconds_total", "Time acquisitions spent waiting for their pool's time share, seconds", (s) => s.stats.shareWaitMs / 1000);
  counted("tenantgraph_db_pool_share_timeouts_total", "Acquisitions that waited for their pool's time share longer than their plan's statement timeout (QUERY_TIMEOUT)", (s) => s.stats.timeouts);
}
