import { execSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { rmSync } from "node:fs";
import { eldLine, windowFigures } from "./live-eld.ts";
import { runLoad } from "./load.ts";
import { schedIdle, startLiveLoad, stopChild, type LiveLoad } from "./live.ts";
import { benchOptionsOrExit, runMain } from "./options.ts";
import { cpuMs, procStat, serverEnv, spawnChild, startScript, waitReady } from "./processes.ts";
import { dashboardGen, signTokens, withoutTenant } from "./scenarios.ts";
import { clearStaleDirectoryCache, loadFixture, seedBenchDatabase } from "./seed.ts";

/**
 * What 1,000 idle connections do to the dashboard, by kind
 * (docs/live-updates.md, "Twelfth round"): one compiled server under the
 * dashboard at BENCH_CONNECTIONS, in rounds of windows, one window per
 * condition, the conditions' order rotated every round:
 *
 * - `none`: nothing else open;
 * - `sse`: BENCH_LIVE_STREAMS idle SSE subscriptions (the bench's live load
 *   with no writes, its clients under SCHED_IDLE as in `npm run bench`);
 * - `tcp`: as many raw TCP connections to the server, nothing sent, from a
 *   process under SCHED_IDLE;
 * - `other`: as many raw TCP connections to another process (a TCP server
 *   that reads nothing), from a process under SCHED_IDLE: the machine's
 *   share of the sockets without the server knowing of them.
 *
 *   DATABASE_URL=... REDIS_URL=... BENCH_IDLE_KINDS=none,sse,tcp,other npx tsx bench/idle-conns.ts
 *
 * A window opens its connections, warms BENCH_WARMUP seconds under the
 * dashboard, measures BENCH_DURATION seconds, closes them. Each window's
 * p95 is compared with the `none` window of the same round (the median of
 * those ratios is the kind's figure); also CPU per request (the server's
 * user+system over its requests; per request also its main thread's user
 * and system time, its other threads' (V8's GC helpers), its minor page
 * faults and context switches) and the machine's busy share.
 *
 * BENCH_NODE_FLAGS: the server's V8 flags instead of start:prod's.
 * BENCH_LIVE_ELD=1: bench/live-eld.ts preloaded, its figures per window
 * (full GCs, scavenges, heap, event-loop delay). BENCH_PERF=1: each
 * window's on-CPU samples of the server with `perf record` (software clock)
 * to /tmp/perf-<kind>-<round>.data (JS names with --perf-basic-prof among
 * the flags). BENCH_SERVER_OUTPUT=1: the server's last output lines at the
 * end (e.g. with --trace-gc among the flags).
 */

const log = (line: string) => process.stdout.write(`[idle-conns] ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const pct = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(1)}%`;

/** Total and idle jiffies of the machine (/proc/stat's first line). */
function machineTicks(): { total: number; idle: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { total: f.reduce((a, b) => a + b, 0), idle: f[3]! + f[4]! };
}

/** The server's counters from /proc: user/system ms of its main thread, ms of its other threads, minor faults, context switches. */
function procCounters(pid: number) {
  const main = procStat(pid, pid)!;
  const all = procStat(pid)!;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const num = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  return { mainUser: main.userMs, mainSys: main.sysMs, otherMs: all.userMs + all.sysMs - main.userMs - main.sysMs, minflt: all.minflt, vcs: num("voluntary_ctxt_switches"), nvcs: num("nonvoluntary_ctxt_switches") };
}

/** `n` raw TCP connections to port from a process under SCHED_IDLE; resolves once all are open. */
async function rawConnections(port: number, n: number): Promise<{ stop(): Promise<void> }> {
  const script = `const net=require("node:net");let open=0,closed=0;for(let i=0;i<${n};i++){const s=net.connect(${port},"127.0.0.1",()=>{if(++open===${n})process.stdout.write("ready\\n")});s.on("error",()=>{});s.on("close",()=>{closed++})}setInterval(()=>{if(closed)process.stdout.write("closed "+closed+"\\n")},5000)`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  if (!schedIdle(child.pid!)) log("SCHED_IDLE not set for the raw connections (chrt missing or refused)");
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (b: Buffer) => {
      const text = b.toString();
      if (text.includes("ready")) resolve();
      if (text.includes("closed")) log(`raw connections to ${port}: ${text.trim()}`);
    });
    child.once("exit", (code) => reject(new Error(`raw connections exited (${code})`)));
  });
  return { stop: () => stopChild(child) };
}

async function main() {
  const opts = benchOptionsOrExit();
  const kinds = (process.env.BENCH_IDLE_KINDS ?? "none,sse,tcp,other").split(",").map((k) => k.trim());
  if (!kinds.includes("none")) throw new Error("BENCH_IDLE_KINDS must include none (the baseline)");
  const n = opts.liveStreams ?? 1000;
  let fixture = await loadFixture(opts);
  if (!fixture) fixture = await seedBenchDatabase(opts, log);
  await clearStaleDirectoryCache(opts.redisUrl);
  const tokens = await signTokens(fixture, opts.jwtSecret);
  const others = new Set(fixture.tenants.filter((t) => t !== fixture.noisy).map((t) => t.slug));
  const gen = dashboardGen(tokens, others);
  const liveTokens = withoutTenant(tokens, fixture.noisy.slug);
  execSync("npm run -s build", { stdio: "inherit" });
  const script = startScript(process.cwd(), "start:prod");
  const flags = process.env.BENCH_NODE_FLAGS?.trim() ? process.env.BENCH_NODE_FLAGS.trim().split(/\s+/) : script.flags;
  const eldFile = process.env.BENCH_LIVE_ELD === "1" ? "/tmp/idle-conns-eld.jsonl" : undefined;
  if (eldFile) rmSync(eldFile, { force: true });
  const probe = eldFile ? ["--import", "tsx", "--import", "./bench/live-eld.ts"] : [];
  const server = spawnChild("server", [...flags, ...probe, "dist/server.js"], process.cwd(), opts.port, { ...serverEnv(opts, fixture.url), ...script.env, ...(eldFile ? { LIVE_ELD_FILE: eldFile } : {}) });
  // The other process's sockets: a TCP server that accepts and reads nothing.
  const otherPort = opts.port + 1;
  const other = kinds.includes("other") ? spawn(process.execPath, ["-e", `require("node:net").createServer((s)=>{s.pause();s.on("error",()=>{})}).listen(${otherPort},"127.0.0.1",()=>process.stdout.write("ready\\n"))`], { stdio: ["ignore", "pipe", "inherit"] }) : undefined;
  if (other) await new Promise<void>((r) => other.stdout!.once("data", () => r()));
  const url = `http://127.0.0.1:${opts.port}`;
  try {
    await waitReady(server, 120_000);
    for (let served = 0; served < 3000; ) served += (await runLoad({ url, connections: opts.connections, durationS: 5, gen })).requests;
    log(`server flags: ${flags.join(" ")}${eldFile ? " (+ live-eld probe)" : ""}`);
    log(`warmed up; ${n} connections per kind, windows of ${opts.warmupS} + ${opts.durationS} s, ${opts.runs} rounds, kinds ${kinds.join(", ")}`);
    const rows = new Map(kinds.map((k) => [k, [] as { round: number; p95: number; p50: number; cpu: number; busy: number; rps: number }[]]));
    for (let round = 0; round < opts.runs; round++) {
      const order = kinds.map((_, i) => kinds[(i + round) % kinds.length]!);
      for (const kind of order) {
        let live: LiveLoad | undefined;
        let raw: { stop(): Promise<void> } | undefined;
        if (kind === "sse" || kind === "ws") live = await startLiveLoad(url, liveTokens, { streams: n, mutationsPerS: 0 }, { BENCH_LIVE_TRANSPORT: kind });
        else if (kind === "tcp") raw = await rawConnections(opts.port, n);
        else if (kind === "other") raw = await rawConnections(otherPort, n);
        else if (kind !== "none") throw new Error(`unknown kind ${kind}`);
        await sleep(1000);
        if (opts.warmupS) await runLoad({ url, connections: opts.connections, durationS: opts.warmupS, gen });
        const cpu0 = cpuMs(server.proc.pid!)!;
        const m0 = machineTicks();
        const p0 = procCounters(server.proc.pid!);
        const t0 = Date.now();
        const perf = process.env.BENCH_PERF === "1"
          ? spawn("perf", ["record", "-F", "499", "-g", "-p", String(server.proc.pid), "-o", `/tmp/perf-${kind}-${round}.data`, "--", "sleep", String(opts.durationS - 1)], { stdio: "ignore" })
          : undefined;
        const r = await runLoad({ url, connections: opts.connections, durationS: opts.durationS, gen });
        if (perf && perf.exitCode === null) await new Promise((res) => perf.once("exit", res));
        const p1 = procCounters(server.proc.pid!);
        const m1 = machineTicks();
        const per = (k: keyof typeof p0) => ((p1[k] - p0[k]) / r.requests).toFixed(k === "mainUser" || k === "mainSys" || k === "otherMs" ? 3 : 2);
        const cpu = (cpuMs(server.proc.pid!)! - cpu0) / r.requests;
        const busy = 100 * (1 - (m1.idle - m0.idle) / (m1.total - m0.total));
        if (eldFile) {
          await sleep(1100);
          log(`round ${round + 1}/${opts.runs} ${kind.padEnd(5)} ${eldLine(windowFigures(eldFile, t0, Date.now() - 1100))}`);
        }
        rows.get(kind)!.push({ round, p95: r.p95, p50: r.p50, cpu, busy, rps: r.rps });
        log(`round ${round + 1}/${opts.runs} ${kind.padEnd(5)} ${r.rps.toFixed(1)} req/s p50 ${r.p50.toFixed(1)} p95 ${r.p95.toFixed(1)} ms cpu ${cpu.toFixed(2)} ms/req machine ${busy.toFixed(0)}% busy, per request: main user ${per("mainUser")} sys ${per("mainSys")} other threads ${per("otherMs")} ms, minflt ${per("minflt")} vcs ${per("vcs")} nvcs ${per("nvcs")}; errors ${r.errors + r.gqlErrors} non-2xx ${r.non2xx} load ${os.loadavg()[0]!.toFixed(1)}`);
        if (live) await live.stop();
        if (raw) await raw.stop();
        await sleep(1000);
      }
    }
    const base = rows.get("none")!;
    log(`medians over ${opts.runs} rounds (ratios against the same round's none window):`);
    for (const [kind, xs] of rows) {
      const ratio = (f: (x: (typeof xs)[number]) => number) => xs.map((x) => (f(x) / f(base.find((b) => b.round === x.round)!) - 1) * 100);
      const p95s = ratio((x) => x.p95);
      log(
        `  ${kind.padEnd(5)} p95 ${median(xs.map((x) => x.p95)).toFixed(1)} ms (${pct(median(p95s))}; rounds ${p95s.map(pct).join(" ")}), p50 ${pct(median(ratio((x) => x.p50)))}, req/s ${pct(median(ratio((x) => x.rps)))}, cpu ${median(xs.map((x) => x.cpu)).toFixed(2)} ms/req (${pct(median(ratio((x) => x.cpu)))}), machine ${median(xs.map((x) => x.busy)).toFixed(0)}% busy`,
      );
    }
    if (process.env.BENCH_SERVER_OUTPUT === "1") for (const line of server.output) log(`server: ${line}`);
  } finally {
    other?.kill("SIGTERM");
    await server.stop();
  }
}

runMain(main);
