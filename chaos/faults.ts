import type { FaultKind } from "./options.ts";
import type { Replica, StopFigures } from "./replicas.ts";
import { Rng } from "./rng.ts";
import type { OwnPostgres, OwnRedis } from "./services.ts";

/**
 * The faults, drawn in advance from the seed (times, kinds, downtimes, which
 * replica), then injected one after the other: Redis killed and restarted
 * from its last snapshot, PostgreSQL stopped (fast) or crashed (immediate)
 * and restarted, one replica sent SIGTERM and started again.
 */

export interface PlannedFault {
  atS: number;
  kind: FaultKind;
  downMs: number;
  replica: number;
}

export interface FaultRecord extends PlannedFault {
  /** When it actually began (a fault waits for the previous one), s since the start. */
  startedS: number;
  /** From the start of the fault until every replica answers /readyz 200 again. */
  recoveredMs: number | undefined;
  /** Redis or PostgreSQL down: from the kill until each replica's /readyz said 503 (undefined: not while it was down). */
  detectedMs?: (number | undefined)[];
  stop?: StopFigures;
  error?: string;
}

export function planFaults(seed: number, durationS: number, kinds: FaultKind[], gapS: [number, number], downS: [number, number]): PlannedFault[] {
  const rng = new Rng(seed).fork(0xfa17);
  const plan: PlannedFault[] = [];
  if (!kinds.length) return plan;
  let t = 0;
  // Kinds in shuffled rounds (each round every kind once), so a run has about as many of each.
  let round: FaultKind[] = [];
  for (;;) {
    t += rng.between(gapS[0], gapS[1]);
    // Leave the last seconds fault-free, so the run ends on a healed system.
    if (t > durationS - 5) break;
    if (!round.length) round = shuffle(rng, kinds);
    const kind = round.pop()!;
    plan.push({ atS: Math.round(t * 10) / 10, kind, downMs: Math.round(rng.between(downS[0], downS[1]) * 1000), replica: rng.int(2) });
  }
  return plan;
}

function shuffle<T>(rng: Rng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function allReady(replicas: Replica[], timeoutMs = 60_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await Promise.all(
      replicas.map((r) =>
        fetch(`${r.url}/readyz`, { signal: AbortSignal.timeout(2_000) }).then(
          (res) => res.status === 200,
          () => false,
        ),
      ),
    );
    if (ok.every(Boolean)) return true;
    await sleep(100);
  }
  return false;
}

export interface FaultDeps {
  pg: OwnPostgres;
  redis: OwnRedis;
  replicas: Replica[];
  drainMs: number;
  log: (line: string) => void;
}

/** Polls each replica's /readyz until it answers 503 or `until` resolves; ms from `t0`, per replica. */
function watchReadiness(replicas: Replica[], t0: number, until: Promise<unknown>): Promise<(number | undefined)[]> {
  let done = false;
  void until.finally(() => (done = true));
  return Promise.all(
    replicas.map(async (r) => {
      while (!done) {
        const status = await fetch(`${r.url}/readyz`, { signal: AbortSignal.timeout(2_000) }).then(
          (res) => res.status,
          () => 0,
        );
        if (status === 503) return Math.round(performance.now() - t0);
        await sleep(100);
      }
      return undefined;
    }),
  );
}

export async function inject(f: PlannedFault, d: FaultDeps, startedS: number): Promise<FaultRecord> {
  const t0 = performance.now();
  const rec: FaultRecord = { ...f, startedS, recoveredMs: undefined };
  d.log(`fault at ${startedS.toFixed(1)} s: ${f.kind}${f.kind === "replica-restart" ? ` (${d.replicas[f.replica]!.name})` : ` (down ${f.downMs} ms)`}`);
  try {
    if (f.kind === "redis-restart") {
      await d.redis.kill();
      const down = sleep(f.downMs);
      const detected = watchReadiness(d.replicas, performance.now(), down);
      await down;
      rec.detectedMs = await detected;
      await d.redis.start();
    } else if (f.kind === "pg-restart" || f.kind === "pg-crash") {
      await d.pg.stop(f.kind === "pg-restart" ? "fast" : "immediate");
      const down = sleep(f.downMs);
      const detected = watchReadiness(d.replicas, performance.now(), down);
      await down;
      rec.detectedMs = await detected;
      await d.pg.start();
    } else {
      const replica = d.replicas[f.replica]!;
      rec.stop = await replica.sigterm(d.drainMs);
      d.log(`  ${replica.name}: ${rec.stop.inFlightAtSignal} in flight at SIGTERM, exit ${rec.stop.exitCode ?? rec.stop.signal} after ${rec.stop.exitMs} ms`);
      await replica.start();
    }
  } catch (err) {
    rec.error = String(err).slice(0, 500);
    d.log(`  fault failed: ${rec.error}`);
  }
  if (await allReady(d.replicas)) rec.recoveredMs = Math.round(performance.now() - t0);
  if (rec.detectedMs) d.log(`  /readyz 503 after: ${rec.detectedMs.map((ms) => (ms === undefined ? "never" : `${ms} ms`)).join(", ")}`);
  d.log(`  recovered: ${rec.recoveredMs === undefined ? "NOT within 60 s" : `${rec.recoveredMs} ms after the fault began`}`);
  return rec;
}
