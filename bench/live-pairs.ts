/**
 * The live scenario's comparison (docs/live-updates.md, "Fifth round: the
 * streams' own cost"): `writer-32` (the dashboard with the writer) and
 * `live-32` (the same with the streams open) measured as BENCH_LIVE_PAIRS
 * interleaved pairs in every run, the order alternating (writer, live),
 * (live, writer), ... so that a drift over the run (the deployments table
 * growing, a neighbour's load) weighs on both sides alike. Each pair gives
 * one ratio of the dashboard's p95, live / writer, of two windows measured
 * one after the other; the figure is the median of all pairs' ratios, with
 * their spread (quartiles, min and max). BENCH_LIVE_STREAMS=0 makes the
 * pairs an A/A (writer against writer): the method's own noise.
 */

export interface PairWindow {
  run: number;
  /** The pair within its run (0, 1, ...). */
  pair: number;
  dashboardP95: number;
  dashboardP50: number;
}

export interface PairFigures {
  pairs: number;
  /** Median of the pairs' p95 ratio, as a change in %. */
  medianPct: number;
  q1Pct: number;
  q3Pct: number;
  minPct: number;
  maxPct: number;
  /** Median of the pairs' p50 ratio, as a change in %. */
  p50MedianPct: number;
  /** Every pair's p95 change in %, in the order measured. */
  all: number[];
}

/** The value at quantile q (0..1) of sorted xs, interpolated. */
function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

/** The pairs' ratios of `live` against `writer` windows of the same run and pair. */
export function pairFigures(live: PairWindow[], writer: PairWindow[]): PairFigures | null {
  const ratios: { p95: number; p50: number }[] = [];
  for (const l of live) {
    const w = writer.find((x) => x.run === l.run && x.pair === l.pair);
    if (!w || !w.dashboardP95 || !w.dashboardP50) continue;
    ratios.push({ p95: (l.dashboardP95 / w.dashboardP95 - 1) * 100, p50: (l.dashboardP50 / w.dashboardP50 - 1) * 100 });
  }
  if (!ratios.length) return null;
  const p95 = ratios.map((r) => r.p95).sort((a, b) => a - b);
  const p50 = ratios.map((r) => r.p50).sort((a, b) => a - b);
  return {
    pairs: ratios.length,
    medianPct: quantile(p95, 0.5),
    q1Pct: quantile(p95, 0.25),
    q3Pct: quantile(p95, 0.75),
    minPct: p95[0]!,
    maxPct: p95[p95.length - 1]!,
    p50MedianPct: quantile(p50, 0.5),
    all: ratios.map((r) => r.p95),
  };
}

/** The report's sentence. */
export function pairLine(f: PairFigures | null): string {
  if (!f) return "";
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(1)}%`;
  return `; paired (${f.pairs} interleaved writer/live pairs, live p95 / writer p95 of each pair): median **${pct(f.medianPct)}**, quartiles ${pct(f.q1Pct)} .. ${pct(f.q3Pct)}, min ${pct(f.minPct)}, max ${pct(f.maxPct)} (p50: median ${pct(f.p50MedianPct)}); every pair: ${f.all.map(pct).join(", ")}`;
}
