import { execFileSync, fork, type ChildProcess } from "node:child_process";
import { readdirSync } from "node:fs";
import os from "node:os";
import { Redis } from "ioredis";
import { redisKeyPrefix } from "../src/config/redis-key-prefix.ts";
import { percentile } from "./load.ts";
import { int } from "./options.ts";
import { CREATE_DEPLOYMENT_MUTATION, toGlobalId, type Tokens } from "./scenarios.ts";
import { sseStream, wsStream, type BenchStream } from "./live-clients.ts";

/**
 * The live-updates load (SPEC section 10): `streams` open subscriptions
 * (deploymentUpdated, half over graphql-ws, half over SSE) spread evenly over
 * the tenants, and a writer committing `mutationsPerS` createDeployment
 * mutations a second, each tenant in turn. Delivery latency is the time from
 * the commit to the event's arrival at the subscriber, on the same machine
 * clock: the commit time is the event's `at`, which the server stamps when
 * the COMMIT has returned and it publishes the change, read here from the
 * event itself on the tenant's Redis topic (the load listens to every
 * tenant's topic). The deployment's `updatedAt`, used before, is written
 * early in the mutation's transaction: from it, the latency also counts the
 * rest of the transaction (its later statements and the COMMIT, each a round
 * trip through the server's event loop, hundreds of milliseconds under a
 * saturating load); it is still reported, with the mutations' round trip.
 *
 * The load runs in two child processes (this file run as a script, its
 * argument the part): the writer, at normal priority, and the streams'
 * clients, under SCHED_IDLE (BENCH_LIVE_CLIENT_SCHED=idle, the default
 * since the ninth round) or at niceness BENCH_LIVE_CLIENT_NICE (19 by
 * default; 0 = normal) with BENCH_LIVE_CLIENT_SCHED=normal.
 * In the bench's process the clients shared one event loop with autocannon
 * (a delivery's arrival waited behind the dashboard's responses being
 * parsed). In production the 1,000 clients are browsers on other machines;
 * here they take CPU from the server, PostgreSQL and autocannon on the same
 * two cores, so they run deprioritised: they get what those leave
 * (docs/live-updates.md, "Seventh round"). Such a client may see an event
 * late when the cores are saturated: that lengthens the measured
 * commit->delivery time, never shortens it. Without streams (writer-32) the
 * streams' process still runs, idle but for the topics, so the writer's
 * setup is the same in both scenarios.
 *
 * Accounting across the two processes: a window's mutations are those the
 * writer sent after measure() and saw committed (with the deployment's id)
 * before take(); the streams' process records every delivery by deployment
 * id, and take() counts the deliveries of exactly those ids (waiting up to
 * SETTLE_MS for the ones still on their way), so a delivery of a mutation
 * outside the window is never counted in it, whichever process hears of a
 * command first.
 */
export const LIVE_SUBSCRIPTION = `subscription { deploymentUpdated { id status updatedAt project { id } } }`;

export interface LiveFigures {
  streams: number;
  tenants: number;
  mutations: number;
  delivered: number;
  /** Deliveries expected from the window's committed mutations (the streams of each one's tenant). */
  expected: number;
  p50: number;
  p95: number;
  p99: number;
  /** From the deployment's updatedAt (written before the rest of the mutation's transaction) to delivery. */
  sinceUpdatedP95: number;
  /** The createDeployment round trip. */
  mutationP95: number;
  /** CPU of the writer's process, % of a core: it shares the machine with the server. */
  writerCpuPct: number;
  /** CPU of the stream clients' process, % of a core (niced: what the server, PostgreSQL and autocannon leave it). */
  streamsCpuPct: number;
  /** The stream clients' process niceness. */
  streamsNice: number;
  /** Whether the stream clients' threads ran under SCHED_IDLE (BENCH_LIVE_CLIENT_SCHED=idle, the default). */
  streamsIdle: boolean;
}

export interface LiveLoad {
  /** Starts counting deliveries (after the warm-up). */
  measure(): void;
  /** The figures since measure() (or the last take()), and counting starts again. */
  take(): Promise<LiveFigures>;
  stop(): Promise<LiveFigures>;
}

interface LiveOptions {
  streams: number;
  mutationsPerS: number;
}

type WriterFigures = Pick<LiveFigures, "streams" | "tenants" | "mutations" | "expected" | "mutationP95"> & { ids: string[]; cpuPct: number };
type StreamFigures = Pick<LiveFigures, "delivered" | "p50" | "p95" | "p99" | "sinceUpdatedP95"> & { cpuPct: number };
type Part = "writer" | "streams";
type Command =
  | { cmd: "start"; url: string; tokens: Tokens; opts: LiveOptions }
  | { cmd: "measure" }
  | { cmd: "take"; ids?: string[]; expected?: number }
  | { cmd: "stop"; ids?: string[]; expected?: number };
type Reply = { ready: true } | { figures: WriterFigures | StreamFigures } | { failed: string };

/** How long take() waits for the window's deliveries still on their way. */
const SETTLE_MS = 5_000;

/** BENCH_LIVE_CLIENT_NICE: the stream clients' niceness, 0..19 (19 by default). */
function clientNice(env: NodeJS.ProcessEnv = process.env): number {
  const n = int(env, "BENCH_LIVE_CLIENT_NICE", 19, 0);
  if (n > 19) throw new Error(`BENCH_LIVE_CLIENT_NICE: expected an integer from 0 to 19, got "${n}"`);
  return n;
}

/**
 * BENCH_LIVE_CLIENT_SCHED: `idle` (the default) runs the stream clients'
 * threads under SCHED_IDLE, `normal` leaves them at their niceness alone
 * (docs/live-updates.md, "Ninth round, second part").
 */
function clientIdle(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.BENCH_LIVE_CLIENT_SCHED ?? "idle";
  if (v !== "idle" && v !== "normal") throw new Error(`BENCH_LIVE_CLIENT_SCHED: expected idle or normal, got "${v}"`);
  return v === "idle";
}

/**
 * SCHED_IDLE for every thread of the process (util-linux's chrt; threads
 * made later inherit it): the kernel runs them only when no other thread
 * wants the core, where niceness 19 still gives them a small share of a
 * busy core (a weight of 15 against 1,024 for each normal thread). False
 * (and the clients stay at their niceness) when chrt is missing or refused.
 */
export function schedIdle(pid: number): boolean {
  try {
    execFileSync("chrt", ["--idle", "--all-tasks", "--pid", "0", String(pid)], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Niceness on Linux is a thread's: setpriority(pid) sets the main thread
 * only, and threads inherit it from the thread that creates them. Node
 * starts its V8 platform threads before the child can be reached, so every
 * thread of the process is set, once right after the fork (the threads the
 * main thread creates later inherit it) and again once the child is up.
 */
function renice(pid: number, nice: number) {
  let tids: number[] = [pid];
  try {
    tids = readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    // no /proc (not Linux): the process's priority is the process's own
  }
  for (const tid of tids) {
    try {
      os.setPriority(tid, nice);
    } catch {
      // a thread that has just ended
    }
  }
}

/** One part of the load in its child process, and its request/reply channel. */
function forkPart(part: Part, env: Record<string, string>) {
  const child = fork(import.meta.filename, [part], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"], env: { ...process.env, ...env } });
  const replies: Reply[] = [];
  const waiters: ((r: Reply) => void)[] = [];
  child.on("message", (m: Reply) => {
    const w = waiters.shift();
    if (w) w(m);
    else replies.push(m);
  });
  const exited = new Promise<Reply>((resolve) => child.once("exit", (code) => resolve({ failed: `live load ${part} process exited (${code})` })));
  const ask = async (c: Command): Promise<Reply> => {
    child.send(c);
    const r = await Promise.race([replies.length ? Promise.resolve(replies.shift()!) : new Promise<Reply>((resolve) => waiters.push(resolve)), exited]);
    if ("failed" in r) throw new Error(r.failed);
    return r;
  };
  // NaN (no sample) crosses the IPC channel as null.
  const figures = async <F>(c: Command) =>
    Object.fromEntries(Object.entries((await ask(c) as { figures: object }).figures).map(([k, v]) => [k, v ?? NaN])) as F;
  return { child, ask, figures };
}

/** Starts the live load in its two child processes; resolves once every stream is open. */
export async function startLiveLoad(url: string, tokens: Tokens, opts: LiveOptions, env: Record<string, string> = {}): Promise<LiveLoad> {
  // `env`: e.g. the REDIS_KEY_PREFIX of the server it loads, whose topics it reads (bench/live-cost.ts runs several).
  const nice = clientNice();
  const wantIdle = clientIdle();
  const streams = forkPart("streams", env);
  if (nice) renice(streams.child.pid!, nice);
  let idle = wantIdle && schedIdle(streams.child.pid!);
  let writer: ReturnType<typeof forkPart> | undefined;
  try {
    await streams.ask({ cmd: "start", url, tokens, opts });
    if (nice) renice(streams.child.pid!, nice);
    if (idle) idle = schedIdle(streams.child.pid!);
    if (wantIdle && !idle) process.stderr.write("[live] SCHED_IDLE not set for the stream clients (chrt missing or refused): they run at their niceness\n");
    writer = forkPart("writer", env);
    await writer.ask({ cmd: "start", url, tokens, opts });
  } catch (err) {
    await Promise.all([stopChild(streams.child), writer && stopChild(writer.child)]);
    throw err;
  }
  const w = writer;
  // The writer's window first (its committed ids), then those ids' deliveries.
  const both = async (cmd: "take" | "stop"): Promise<LiveFigures> => {
    const wf = await w.figures<WriterFigures>({ cmd });
    const sf = await streams.figures<StreamFigures>({ cmd, ids: wf.ids, expected: wf.expected });
    const { ids: _ids, cpuPct: writerCpuPct, ...writerFigures } = wf;
    const { cpuPct: streamsCpuPct, ...streamFigures } = sf;
    return { ...writerFigures, ...streamFigures, writerCpuPct, streamsCpuPct, streamsNice: nice, streamsIdle: idle };
  };
  return {
    measure() {
      w.child.send({ cmd: "measure" } satisfies Command);
      streams.child.send({ cmd: "measure" } satisfies Command);
    },
    take: () => both("take"),
    async stop() {
      const f = await both("stop");
      await Promise.all([stopChild(w.child), stopChild(streams.child)]);
      return f;
    },
  };
}

export async function stopChild(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** Stream i's member: tenant i % n, then the tenant's members in turn. */
function streamMember(tokens: Tokens, i: number) {
  const row = tokens.members[i % tokens.members.length]!;
  return row[Math.floor(i / tokens.members.length) % row.length]!;
}

/** A process's CPU since the last call, % of a core. */
function cpuMeter() {
  let cpu0 = process.cpuUsage();
  let since = Date.now();
  return {
    reset() {
      cpu0 = process.cpuUsage();
      since = Date.now();
    },
    take() {
      const used = process.cpuUsage(cpu0);
      const pct = (used.user + used.system) / 10 / Math.max(1, Date.now() - since);
      this.reset();
      return pct;
    },
  };
}

/** The writer, in its child process: `mutationsPerS` createDeployment, each tenant in turn. */
async function runWriter(url: string, tokens: Tokens, opts: LiveOptions) {
  // The streams of each tenant (the streams' process opens them in this order): a mutation's expected deliveries.
  const perTenant = new Map<string, number>();
  for (let i = 0; i < opts.streams; i++) {
    const slug = streamMember(tokens, i).tenant.slug;
    perTenant.set(slug, (perTenant.get(slug) ?? 0) + 1);
  }
  let measuring = false;
  /** A mutation counts in the window it was sent in, if it has committed before that window's take(). */
  let window = 0;
  let ids: string[] = [];
  let expected = 0;
  let roundTrips: number[] = [];
  let n = 0;
  const cpu = cpuMeter();
  // mutationsPerS 0: the streams alone, idle (bench/live-cost.ts).
  const timer = opts.mutationsPerS <= 0 ? undefined : setInterval(() => {
    const row = tokens.developers[n % tokens.developers.length]!;
    const dev = row[Math.floor(n / tokens.developers.length) % row.length]!;
    const projectId = dev.tenant.projectIds[n % dev.tenant.projectIds.length]!;
    n++;
    const sentIn = measuring ? window : -1;
    const sent = Date.now();
    void fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${dev.token}` },
      body: JSON.stringify({ query: CREATE_DEPLOYMENT_MUTATION, variables: { input: { projectId: toGlobalId("Project", projectId), branch: "live" } } }),
    })
      .then((r) => r.json())
      .then((body: any) => {
        const id = body?.data?.createDeployment?.deployment?.id;
        if (body.errors || typeof id !== "string" || sentIn !== window) return;
        roundTrips.push(Date.now() - sent);
        ids.push(id);
        expected += perTenant.get(dev.tenant.slug) ?? 0;
      })
      .catch(() => {});
  }, 1000 / opts.mutationsPerS);

  const take = (): WriterFigures => {
    const f = {
      streams: opts.streams,
      tenants: perTenant.size,
      mutations: ids.length,
      expected,
      mutationP95: percentile(Float64Array.from(roundTrips).sort(), 95),
      ids,
      cpuPct: cpu.take(),
    };
    window++;
    ids = [];
    roundTrips = [];
    expected = 0;
    return f;
  };
  return {
    measure() {
      measuring = true;
      window++;
      ids = [];
      roundTrips = [];
      expected = 0;
      cpu.reset();
    },
    take,
    async stop() {
      clearInterval(timer);
      const f = take();
      measuring = false;
      return f;
    },
  };
}

/** BENCH_LIVE_TRANSPORT: `both` (the default: every other stream over graphql-ws, the rest over SSE), `ws` or `sse` (every stream over one, to tell their costs apart). */
function liveTransport(env: NodeJS.ProcessEnv = process.env): "both" | "ws" | "sse" {
  const v = env.BENCH_LIVE_TRANSPORT ?? "both";
  if (v !== "both" && v !== "ws" && v !== "sse") throw new Error(`BENCH_LIVE_TRANSPORT: expected both, ws or sse, got "${v}"`);
  return v;
}

/** The streams' clients, in their (niced) child process: every delivery recorded by deployment id. */
async function runStreams(url: string, tokens: Tokens, opts: LiveOptions) {
  const subs: BenchStream[] = [];
  interface Deliveries {
    /** First heard of (a delivery or the event): entries of no window are dropped after a while. */
    since: number;
    /** Commit time, the event's `at` on Redis (undefined until it has arrived here). */
    at?: number;
    /** Arrival times of the deliveries, and their latencies from the deployment's updatedAt. */
    arrivals: number[];
    sinceUpdated: number[];
  }
  const byId = new Map<string, Deliveries>();
  const entry = (id: string) => {
    let e = byId.get(id);
    if (!e) byId.set(id, (e = { since: Date.now(), arrivals: [], sinceUpdated: [] }));
    return e;
  };
  const topics = new Redis(process.env.REDIS_URL!);
  // The live topics are under the server's REDIS_KEY_PREFIX (src/modules/live/bus.ts).
  await topics.psubscribe(`${redisKeyPrefix(process.env)}t:{*}:live`);
  topics.on("pmessage", (_pattern, _channel, message: string) => {
    const e = JSON.parse(message) as { type?: string; id?: string; at?: number };
    if (e.type !== "Deployment" || typeof e.id !== "string" || typeof e.at !== "number") return;
    entry(toGlobalId("Deployment", e.id)).at = e.at;
  });
  const handlers = {
    onNext(payload: { data?: any }) {
      const d = payload.data?.deploymentUpdated;
      if (!d) return;
      const now = Date.now();
      const e = entry(d.id);
      e.arrivals.push(now);
      e.sinceUpdated.push(now - Date.parse(d.updatedAt));
    },
    onEnd() {},
  };
  const wsUrl = url.replace(/^http/, "ws") + "/graphql";
  const transport = liveTransport();
  for (let i = 0; i < opts.streams; i++) {
    const member = streamMember(tokens, i);
    const authorization = `Bearer ${member.token}`;
    subs.push(
      transport === "ws" || (transport === "both" && i % 2 === 0)
        ? await wsStream(wsUrl, LIVE_SUBSCRIPTION, { authorization }, handlers)
        : await sseStream(`${url}/graphql`, LIVE_SUBSCRIPTION, { authorization }, handlers),
    );
  }

  const cpu = cpuMeter();
  /** The deliveries of the window's mutations (`ids`), once all `expected` have come and their commit times are known, or SETTLE_MS. */
  const take = async (ids: string[], expected: number): Promise<StreamFigures> => {
    const settled = () => ids.reduce((k, id) => k + (byId.get(id)?.arrivals.length ?? 0), 0) >= expected && ids.every((id) => !byId.get(id)?.arrivals.length || byId.get(id)!.at !== undefined);
    for (const until = Date.now() + SETTLE_MS; !settled() && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
    const cpuPct = cpu.take();
    const latencies: number[] = [];
    const sinceUpdated: number[] = [];
    let delivered = 0;
    for (const id of ids) {
      const e = byId.get(id);
      if (!e) continue;
      delivered += e.arrivals.length;
      if (e.at !== undefined) for (const t of e.arrivals) latencies.push(t - e.at);
      sinceUpdated.push(...e.sinceUpdated);
      byId.delete(id);
    }
    // Deployments of no window (before measure(), or committed after a take()): their late deliveries are never counted.
    const old = Date.now() - 60_000;
    for (const [id, e] of byId) if (e.since < old) byId.delete(id);
    const sorted = Float64Array.from(latencies).sort();
    return {
      delivered,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      sinceUpdatedP95: percentile(Float64Array.from(sinceUpdated).sort(), 95),
      cpuPct,
    };
  };
  return {
    measure: () => cpu.reset(),
    take,
    async stop(ids: string[], expected: number) {
      const f = await take(ids, expected);
      topics.disconnect();
      await Promise.allSettled(subs.map((s) => s.close()));
      return f;
    },
  };
}

if (process.argv[1] === import.meta.filename && process.send) {
  const part = process.argv[2] as Part;
  const reply = (r: Reply) => process.send!(r);
  let writer: Awaited<ReturnType<typeof runWriter>> | undefined;
  let streams: Awaited<ReturnType<typeof runStreams>> | undefined;
  process.on("message", (c: Command) => {
    void (async () => {
      if (c.cmd === "start") {
        if (part === "writer") writer = await runWriter(c.url, c.tokens, c.opts);
        else streams = await runStreams(c.url, c.tokens, c.opts);
        reply({ ready: true });
      } else if (c.cmd === "measure") {
        writer?.measure();
        streams?.measure();
      } else if (c.cmd === "take") reply({ figures: writer ? writer.take() : await streams!.take(c.ids ?? [], c.expected ?? 0) });
      else if (c.cmd === "stop") reply({ figures: writer ? await writer.stop() : await streams!.stop(c.ids ?? [], c.expected ?? 0) });
    })().catch((err: unknown) => reply({ failed: String((err as Error)?.stack ?? err) }));
  });
  process.on("SIGTERM", () => process.exit(0));
  // The bench gone (its IPC channel closed): nothing to serve any more.
  process.on("disconnect", () => process.exit(0));
}
