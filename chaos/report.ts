import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { execSync } from "node:child_process";
import { percentile } from "../bench/load.ts";
import type { FaultRecord } from "./faults.ts";
import type { ChaosOptions } from "./options.ts";
import type { VerifyResult } from "./verify.ts";
import type { Stats, Violation } from "./workload.ts";

/** The chaos run's summary: printed, and written as JSON and Markdown. */

/** Violation kinds, in the order of the headline; each must be 0 for the run to pass. */
const KINDS: [string, string][] = [
  ["lost", "acknowledged mutations missing from the database"],
  ["stored-refused", "mutations stored although the answer refused them"],
  ["stored-unacknowledged", "mutations stored without an answer, not cut by a SIGTERM"],
  ["duplicate", "mutations stored more than once (attempts with one Idempotency-Key)"],
  ["leak", "answers carrying another tenant's row (or a write stored in another tenant)"],
  ["stale", "revoked callers served after their revocation was acknowledged"],
  ["final-state", "membership or key left in another state than the acknowledged one"],
  ["audit-mismatch", "row stored without its audit entry, or the reverse"],
  ["bad-failure", "failures other than a coded 4xx or a 503 with Retry-After (500, INTERNAL_SERVER_ERROR, no Retry-After, not JSON)"],
  ["hang", `requests unanswered within the client timeout`],
  ["cut-by-sigterm", "requests in flight at a SIGTERM whose connection was dropped"],
  ["cut", "connections dropped with no SIGTERM"],
  ["not-sent", "connections refused by a replica in rotation"],
  ["wrong-refusal", "healthy callers refused (a 4xx code for a request that should have succeeded)"],
  ["replica-exited", "replicas that exited on their own"],
];

export interface Summary {
  passed: boolean;
  startedAt: string;
  commit: string;
  options: Omit<ChaosOptions, "jwtSecret">;
  loadS: number;
  headline: {
    operations: number;
    faults: number;
    lost: number;
    leaked: number;
    stale: number;
    storedUnacknowledgedBeyondKills: number;
    badFailures: number;
    hangs: number;
    cutBySigterm: number;
    worstLatencyMs: number;
  };
  operations: { total: number; byOp: Record<string, number>; verdicts: Record<string, number> };
  latencyMs: { p50: number; p95: number; p99: number; max: number; worst: Stats["worst"] };
  codes: Record<string, number>;
  faults: { byKind: Record<string, number>; list: FaultRecord[] };
  shutdowns: { count: number; inFlightAtSigterm: number; cut: number; worstExitMs: number; nonZeroExits: number; forced: number };
  ledger: VerifyResult["ledger"];
  ownership: VerifyResult["ownership"];
  revocations: { acknowledged: Record<string, number>; probesAfterAck: number };
  retries: Stats["retries"];
  violations: { byKind: Record<string, number>; examples: Record<string, Violation[]> };
  unhandledErrorLines: number;
  replicaStarts: number[];
  harnessErrors: number;
}

/** Kinds found while the load runs (the others are found by the checks at the end). */
const ONLINE = new Set(["stale", "bad-failure", "hang", "cut", "cut-by-sigterm", "not-sent", "wrong-refusal", "replica-exited"]);

/** The fault that began last before `at` (s since the start of the load), to read a violation by. */
function lastFault(faults: FaultRecord[], at: number): { afterFault?: string } {
  const f = faults.filter((x) => x.startedS <= at).at(-1);
  return f ? { afterFault: `${f.kind}${f.kind === "replica-restart" ? ` ${f.stop?.replica ?? ""}` : ""} at ${f.startedS.toFixed(1)} s` } : {};
}

export function summarize(input: {
  opts: ChaosOptions;
  stats: Stats;
  faults: FaultRecord[];
  result: VerifyResult;
  loadS: number;
  harnessErrors: number;
  unhandledErrorLines: number;
  replicaStarts: number[];
}): Summary {
  const { stats, faults, result } = input;
  const { jwtSecret: _secret, ...options } = input.opts;
  const sorted = Float64Array.from(stats.latencies).sort();
  const byKind: Record<string, number> = {};
  const examples: Record<string, Violation[]> = {};
  for (const v of stats.violations) {
    byKind[v.kind] = (byKind[v.kind] ?? 0) + 1;
    const list = (examples[v.kind] ??= []);
    if (list.length < 10) list.push(ONLINE.has(v.kind) ? { ...v, detail: { ...v.detail, ...lastFault(faults, v.at) } } : v);
  }
  const faultKinds: Record<string, number> = {};
  for (const f of faults) faultKinds[f.kind] = (faultKinds[f.kind] ?? 0) + 1;
  const stops = faults.flatMap((f) => (f.stop ? [f.stop] : []));
  const total = Object.values(stats.ops).reduce((a, b) => a + b, 0);
  const max = sorted.length ? sorted[sorted.length - 1]! : 0;
  const n = (k: string) => byKind[k] ?? 0;
  let commit = "unknown";
  try {
    commit = execSync("git rev-parse --short HEAD", { encoding: "utf8" }).trim();
  } catch {
    // not a checkout
  }
  return {
    passed: KINDS.every(([k]) => n(k) === 0) && input.harnessErrors === 0,
    startedAt: new Date(Date.now() - input.loadS * 1000).toISOString(),
    commit,
    options,
    loadS: Math.round(input.loadS),
    headline: {
      operations: total,
      faults: faults.length,
      lost: n("lost"),
      leaked: n("leak"),
      stale: n("stale"),
      storedUnacknowledgedBeyondKills: n("stored-unacknowledged") + n("stored-refused"),
      badFailures: n("bad-failure"),
      hangs: n("hang"),
      cutBySigterm: n("cut-by-sigterm"),
      worstLatencyMs: Math.round(max),
    },
    operations: { total, byOp: stats.ops, verdicts: stats.verdicts },
    latencyMs: {
      p50: Math.round(percentile(sorted, 50)),
      p95: Math.round(percentile(sorted, 95)),
      p99: Math.round(percentile(sorted, 99)),
      max: Math.round(max),
      worst: stats.worst,
    },
    codes: Object.fromEntries(Object.entries(stats.codes).sort((a, b) => b[1] - a[1])),
    faults: { byKind: faultKinds, list: faults },
    shutdowns: {
      count: stops.length,
      inFlightAtSigterm: stops.reduce((a, s) => a + s.inFlightAtSignal, 0),
      cut: stats.cutInFlightBySigterm,
      worstExitMs: Math.max(0, ...stops.map((s) => s.exitMs)),
      nonZeroExits: stops.filter((s) => s.exitCode !== 0).length,
      forced: stops.filter((s) => s.forced).length,
    },
    ledger: result.ledger,
    ownership: result.ownership,
    revocations: { acknowledged: stats.revocationsAcknowledged, probesAfterAck: stats.staleProbes },
    retries: stats.retries,
    violations: { byKind, examples },
    unhandledErrorLines: input.unhandledErrorLines,
    replicaStarts: input.replicaStarts,
    harnessErrors: input.harnessErrors,
  };
}

const row = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;

export function markdown(s: Summary): string {
  const h = s.headline;
  const o = s.options;
  const lines = [
    `# Chaos run ${s.startedAt} (commit ${s.commit}): ${s.passed ? "PASSED" : "FAILED"}`,
    ``,
    `\`CHAOS_DURATION_S=${o.durationS} CHAOS_SEED=${o.seed} CHAOS_CLIENTS=${o.clients} CHAOS_TENANTS=${o.tenants} npm run chaos\`: ` +
      `two replicas, ${o.tenants} tenants, ${o.clients} clients (think ${o.thinkMs.join("-")} ms), a fault every ${o.faultGapS.join("-")} s ` +
      `(${o.faults.join(", ")}; down ${o.downS.join("-")} s), Redis snapshot every ${o.snapshotEveryS} s, client timeout ${o.timeoutMs} ms.`,
    ``,
    row(["operations", "faults", "lost", "leaked", "stale", "stored unacknowledged beyond kills", "bad failures", "hangs", "cut by SIGTERM", "worst latency"]),
    row(Array(10).fill("---")),
    row([h.operations, h.faults, h.lost, h.leaked, h.stale, h.storedUnacknowledgedBeyondKills, h.badFailures, h.hangs, h.cutBySigterm, `${h.worstLatencyMs} ms`]),
    ``,
    `Latency: p50 ${s.latencyMs.p50} ms, p95 ${s.latencyMs.p95} ms, p99 ${s.latencyMs.p99} ms, max ${s.latencyMs.max} ms` +
      (s.latencyMs.worst ? ` (${s.latencyMs.worst.op} on ${s.latencyMs.worst.replica}, ${s.latencyMs.worst.key}, request ${s.latencyMs.worst.requestId})` : "") +
      `.`,
    ``,
    `## Faults`,
    ``,
    row(["at (s)", "kind", "down (ms)", "/readyz 503 after (ms)", "recovered after (ms)", "SIGTERM: in flight / exit / ms"]),
    row(Array(6).fill("---")),
    ...s.faults.list.map((f) =>
      row([
        f.startedS.toFixed(1),
        f.kind + (f.kind === "replica-restart" ? ` (${f.stop?.replica ?? f.replica})` : ""),
        f.kind === "replica-restart" ? "" : f.downMs,
        f.detectedMs ? f.detectedMs.map((ms) => ms ?? "never").join(", ") : "",
        f.recoveredMs ?? "not recovered",
        f.stop ? `${f.stop.inFlightAtSignal} / ${f.stop.exitCode ?? f.stop.signal}${f.stop.forced ? " (SIGKILL)" : ""} / ${f.stop.exitMs}` : (f.error ?? ""),
      ]),
    ),
    ``,
    `Shutdowns: ${s.shutdowns.count}, ${s.shutdowns.inFlightAtSigterm} requests in flight at SIGTERM, ${s.shutdowns.cut} cut, ` +
      `worst time to exit ${s.shutdowns.worstExitMs} ms, ${s.shutdowns.nonZeroExits} non-zero exits, ${s.shutdowns.forced} needed SIGKILL.`,
    ``,
    `## Checks`,
    ``,
    row(["check", "violations"]),
    row(["---", "---"]),
    ...KINDS.map(([k, what]) => row([what, s.violations.byKind[k] ?? 0])),
    ``,
    `Ledger: ${s.ledger.mutations} mutations (each with an Idempotency-Key), ${s.ledger.acknowledged} acknowledged ` +
      `(${s.ledger.acknowledgedOnReplay} of them only by a replay of the stored answer), ${s.ledger.lost} lost; ` +
      `${s.retries.mutationsRetried} sent again after a 503 or a connection error (${s.retries.extraAttempts} extra attempts); ` +
      `${s.ledger.storedUnacknowledgedCutByKill} stored with the answer cut by a SIGTERM (allowed), ${s.ledger.unacknowledgedNotStored} unanswered and not stored. ` +
      `Ownership: ${s.ownership.rowsChecked} (row, tenant) pairs checked, ${s.ownership.leaked} foreign, ${s.ownership.unverified} not found in the database. ` +
      `Revocations acknowledged: ${Object.entries(s.revocations.acknowledged).map(([k, v]) => `${v} ${k}`).join(", ") || "none"}; ` +
      `${s.revocations.probesAfterAck} requests by revoked callers sent after the acknowledgement.`,
    ``,
    `## Answers`,
    ``,
    row(["HTTP and codes", "count"]),
    row(["---", "---"]),
    ...Object.entries(s.codes).map(([k, v]) => row([k, v])),
    ``,
    row(["operation", "count"]),
    row(["---", "---"]),
    ...Object.entries(s.operations.byOp).sort((a, b) => b[1] - a[1]).map(([k, v]) => row([k, v])),
    ``,
    `ioredis "Unhandled error event" lines in the replicas' output: ${s.unhandledErrorLines}. Replica starts: ${s.replicaStarts.join(", ")}. Harness errors: ${s.harnessErrors}.`,
  ];
  const kinds = Object.keys(s.violations.examples);
  if (kinds.length) {
    lines.push(``, `## Violations (first 10 of each kind)`, ``);
    for (const k of kinds) {
      lines.push(`### ${k} (${s.violations.byKind[k]})`, ``);
      for (const v of s.violations.examples[k]!) lines.push(`- at ${v.at} s: \`${JSON.stringify(v.detail)}\``);
      lines.push(``);
    }
  }
  return lines.join("\n") + "\n";
}

export async function writeSummary(s: Summary, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const stamp = s.startedAt.replace(/:/g, "-").replace(/\.\d+Z$/, "");
  const json = path.join(dir, `chaos-${stamp}.json`);
  const md = path.join(dir, `chaos-${stamp}.md`);
  await writeFile(json, JSON.stringify(s, null, 2) + "\n");
  const text = markdown(s);
  await writeFile(md, text);
  process.stdout.write("\n" + text);
  return [json, md];
}
