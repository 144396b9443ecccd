import type { LoadResult } from "./load.ts";
import type { PoolSample } from "./neighbours.ts";

/** Medians over runs, the table, the target checks. */

export interface ScenarioSpec {
  id: string;
  title: string;
  target: "server" | "floor";
  connections: number;
  /** The floor scenario this one is compared with (same request, same connections). */
  floor?: string;
}

export interface StatementFigures {
  /** Every statement PostgreSQL ran, per request (BEGIN/COMMIT and set_config included). */
  perRequest: number;
  /** Client messages per request (Query or Sync: round-trips; bench/sql-counter.ts). */
  messages?: number;
  data: number;
  transaction: number;
  settings: number;
  platformRole: number;
  top: { sql: string; perRequest: number }[];
}

export interface ScenarioResult {
  spec: ScenarioSpec;
  status: "ok" | "n/a";
  note?: string;
  runs: (LoadResult & { rssPeakMb: number; cpuMsPerRequest: number; pools?: PoolSample })[];
  statements?: StatementFigures;
  noise?: LoadResult[];
}

export interface Summary {
  id: string;
  title: string;
  target: string;
  connections: number;
  status: string;
  note?: string;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
  non2xx: number;
  sqlPerRequest: number | null;
  ratioToFloor: number | null;
  p95ToFloor: number | null;
  rssPeakMb: number;
  /** CPU time of the target process (server or floor) per request; PostgreSQL's not included. */
  cpuMsPerRequest: number;
}

export function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function summarize(results: ScenarioResult[]): Summary[] {
  const byId = new Map(results.map((r) => [r.spec.id, r]));
  return results.map((r) => {
    const floor = r.spec.floor ? byId.get(r.spec.floor) : undefined;
    const perRun = (f: (x: LoadResult) => number) => median(r.runs.map(f));
    const ratio = (f: (x: LoadResult) => number) =>
      floor && floor.runs.length
        ? median(r.runs.map((run, i) => (floor.runs[i] ? f(run) / f(floor.runs[i]!) : NaN)))
        : null;
    return {
      id: r.spec.id,
      title: r.spec.title,
      target: r.spec.target,
      connections: r.spec.connections,
      status: r.status,
      note: r.note,
      rps: perRun((x) => x.rps),
      p50: perRun((x) => x.p50),
      p95: perRun((x) => x.p95),
      p99: perRun((x) => x.p99),
      errors: r.runs.reduce((s, x) => s + x.errors + x.gqlErrors, 0),
      non2xx: r.runs.reduce((s, x) => s + x.non2xx, 0),
      sqlPerRequest: r.statements?.perRequest ?? null,
      ratioToFloor: ratio((x) => x.rps),
      p95ToFloor: ratio((x) => x.p95),
      rssPeakMb: Math.max(0, ...r.runs.map((x) => x.rssPeakMb)),
      cpuMsPerRequest: median(r.runs.map((x) => x.cpuMsPerRequest)),
    };
  });
}

const f1 = (n: number | null | undefined) => (n == null || !Number.isFinite(n) ? "–" : n.toFixed(1));
const f2 = (n: number | null | undefined) => (n == null || !Number.isFinite(n) ? "–" : n.toFixed(2));

export function table(rows: Summary[]): string {
  const header = ["scenario", "conns", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "non-2xx", "SQL/req", "ratio to floor", "p95 / floor p95", "CPU ms/req", "peak RSS MB"];
  const lines = rows.map((r) =>
    r.status !== "ok"
      ? [r.title, String(r.connections), "n/a", "n/a", "n/a", "n/a", "–", "–", "–", "–", "–", "–", "–"]
      : [
          r.title,
          String(r.connections),
          f1(r.rps),
          f1(r.p50),
          f1(r.p95),
          f1(r.p99),
          String(r.errors),
          String(r.non2xx),
          f1(r.sqlPerRequest),
          f2(r.ratioToFloor),
          f2(r.p95ToFloor),
          f2(r.cpuMsPerRequest),
          f1(r.rssPeakMb),
        ],
  );
  const out = [`| ${header.join(" | ")} |`, `|${header.map((_h, i) => (i < 1 ? "---" : "---:")).join("|")}|`];
  for (const l of lines) out.push(`| ${l.join(" | ")} |`);
  return out.join("\n");
}

export interface TargetCheck {
  target: string;
  measured: string;
  pass: boolean | null;
}

export function checkTargets(rows: Summary[], noisyDeltaPct: number | null): TargetCheck[] {
  const get = (id: string) => rows.find((r) => r.id === id && r.status === "ok");
  const dash32 = get("dashboard-32");
  const dash8 = get("dashboard-8");
  const usage1 = get("usage-1");
  const serverRss = Math.max(0, ...rows.filter((r) => r.target === "server").map((r) => r.rssPeakMb));
  const checks: TargetCheck[] = [];
  checks.push({
    target: "dashboard throughput at 32 conns >= 0.5x floor (aim 0.6x)",
    measured: dash32 ? `${f2(dash32.ratioToFloor)}x` : "n/a",
    pass: dash32?.ratioToFloor != null ? dash32.ratioToFloor >= 0.5 : null,
  });
  checks.push({
    target: "dashboard p95 at 32 conns <= 2x floor p95",
    measured: dash32 ? `${f2(dash32.p95ToFloor)}x (${f1(dash32.p95)} ms)` : "n/a",
    pass: dash32?.p95ToFloor != null ? dash32.p95ToFloor <= 2 : null,
  });
  checks.push({
    target: "dashboard p95 at 8 conns < 50 ms",
    measured: dash8 ? `${f1(dash8.p95)} ms` : "n/a",
    pass: dash8 ? dash8.p95 < 50 : null,
  });
  checks.push({
    target: "platform.tenantUsage over all tenants < 200 ms (1 conn, p50)",
    measured: usage1 ? `p50 ${f1(usage1.p50)} ms, p95 ${f1(usage1.p95)} ms` : "n/a",
    pass: usage1 ? usage1.p50 < 200 : null,
  });
  checks.push({
    target: "noisy neighbour moves the others' p95 by < 20%",
    measured: noisyDeltaPct == null ? "n/a" : `${noisyDeltaPct >= 0 ? "+" : ""}${noisyDeltaPct.toFixed(1)}%`,
    pass: noisyDeltaPct == null ? null : Math.abs(noisyDeltaPct) < 20,
  });
  checks.push({
    target: "server RSS < 300 MB under load",
    measured: `${f1(serverRss)} MB peak`,
    pass: serverRss > 0 ? serverRss < 300 : null,
  });
  return checks;
}

export function checksTable(checks: TargetCheck[]): string {
  const out = ["| target (SPEC 9) | measured | holds |", "|---|---|---|"];
  for (const c of checks) out.push(`| ${c.target} | ${c.measured} | ${c.pass == null ? "n/a" : c.pass ? "yes" : "NO"} |`);
  return out.join("\n");
}
