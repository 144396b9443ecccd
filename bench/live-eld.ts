import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { constants, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";

/**
 * What the server's event loop lives through under the live load
 * (docs/live-updates.md, "Sixth round"): preloaded into a server
 * (`--import <this file>` after tsx, bench/live-cost.ts with
 * BENCH_LIVE_ELD=1), it appends one line a second to LIVE_ELD_FILE: the
 * event-loop delay (perf_hooks.monitorEventLoopDelay, 2 ms resolution:
 * p99 and max of the second), the process's CPU (user, system), the GC
 * pauses of the second (scavenges, mark-compacts: count, ms, longest) and
 * the heap, and the WebSocket pings sent (and the largest burst of pings
 * less than 1 ms apart, one keep-alive turn). `windowFigures` reads the
 * lines of a time window back.
 */

export interface EldSecond {
  t: number;
  userMs: number;
  sysMs: number;
  p99: number;
  max: number;
  minorN: number;
  minorMs: number;
  majorN: number;
  majorMs: number;
  majorMax: number;
  heapMb: number;
  heapTotalMb: number;
  pings: number;
  pingBurst: number;
}

function start(file: string, WebSocket: typeof import("ws").WebSocket) {
  const delay = monitorEventLoopDelay({ resolution: 2 });
  delay.enable();
  let gc = { minorN: 0, minorMs: 0, majorN: 0, majorMs: 0, majorMax: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        gc.majorN++;
        gc.majorMs += e.duration;
        gc.majorMax = Math.max(gc.majorMax, e.duration);
      } else {
        gc.minorN++;
        gc.minorMs += e.duration;
      }
    }
  }).observe({ entryTypes: ["gc"] });
  // The server's own `ws` (imported as the server imports it: the same module instance): its pings counted.
  let pings = 0;
  let burst = 0;
  let pingBurst = 0;
  let last = 0;
  const ping = WebSocket.prototype.ping;
  WebSocket.prototype.ping = function (this: InstanceType<typeof WebSocket>, ...args: Parameters<typeof ping>) {
    const now = performance.now();
    burst = now - last < 1 ? burst + 1 : 1;
    last = now;
    pingBurst = Math.max(pingBurst, burst);
    pings++;
    return ping.apply(this, args);
  };
  let cpu = process.cpuUsage();
  setInterval(() => {
    const used = process.cpuUsage(cpu);
    cpu = process.cpuUsage();
    const mem = process.memoryUsage();
    const line: EldSecond = {
      t: Date.now(),
      userMs: used.user / 1000,
      sysMs: used.system / 1000,
      p99: delay.percentile(99) / 1e6,
      max: delay.max / 1e6,
      ...gc,
      heapMb: mem.heapUsed / 2 ** 20,
      heapTotalMb: mem.heapTotal / 2 ** 20,
      pings,
      pingBurst,
    };
    appendFileSync(file, JSON.stringify(line) + "\n");
    delay.reset();
    gc = { minorN: 0, minorMs: 0, majorN: 0, majorMs: 0, majorMax: 0 };
    pings = pingBurst = 0;
  }, 1000).unref();
}

if (process.env.LIVE_ELD_FILE) start(process.env.LIVE_ELD_FILE, (await import("ws")).WebSocket);

const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);

/** The seconds of [from, to] (ms epoch) of a probe's file, summed up. */
export function windowFigures(file: string, from: number, to: number) {
  if (!existsSync(file)) return null;
  const s = readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as EldSecond)
    .filter((x) => x.t > from + 1000 && x.t <= to);
  if (!s.length) return null;
  const sum = (k: keyof EldSecond) => s.reduce((a, x) => a + x[k], 0);
  return {
    seconds: s.length,
    /** Median over the seconds of each second's p99 event-loop delay, and the longest delay of the window (ms). */
    p99: median(s.map((x) => x.p99)),
    max: Math.max(...s.map((x) => x.max)),
    /** Seconds whose longest delay passed 50 ms. */
    over50: s.filter((x) => x.max > 50).length,
    majorN: sum("majorN"),
    majorMs: sum("majorMs"),
    majorMax: Math.max(...s.map((x) => x.majorMax)),
    minorMsPerS: sum("minorMs") / s.length,
    sysPct: sum("sysMs") / s.length / 10,
    userPct: sum("userMs") / s.length / 10,
    pingsPerS: sum("pings") / s.length,
    pingBurst: Math.max(...s.map((x) => x.pingBurst)),
    /** Median over the seconds of the heap in use, and of the scavenges a second. */
    heapMb: median(s.map((x) => x.heapMb)),
    minorPerS: sum("minorN") / s.length,
  };
}

export type WindowFigures = NonNullable<ReturnType<typeof windowFigures>>;

export const eldLine = (f: WindowFigures | null) =>
  f
    ? `loop delay p99 ${f.p99.toFixed(1)} ms (median of seconds), max ${f.max.toFixed(0)} ms, ${f.over50} s over 50 ms; mark-compacts ${f.majorN} (${f.majorMs.toFixed(0)} ms, longest ${f.majorMax.toFixed(0)}), scavenges ${f.minorPerS.toFixed(1)}/s ${f.minorMsPerS.toFixed(1)} ms/s; heap ${f.heapMb.toFixed(0)} MB; CPU user ${f.userPct.toFixed(1)}% sys ${f.sysPct.toFixed(1)}%; pings ${f.pingsPerS.toFixed(0)}/s, largest burst ${f.pingBurst}`
    : "no probe figures";
