import { fork, type ChildProcess } from "node:child_process";
import { Redis } from "ioredis";
import { redisKeyPrefix } from "../src/config/redis-key-prefix.ts";
import { percentile } from "./load.ts";
import { CREATE_DEPLOYMENT_MUTATION, toGlobalId, type Tokens } from "./scenarios.ts";
import { sseSubscribe, wsClient, wsSubscribe, type LiveSubscription } from "../test/helpers/live-client.ts";

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
 * The streams' clients run in a child process of their own (this file run
 * as a script): in the bench's process they shared one event loop with
 * autocannon, so a delivery's arrival waited behind the dashboard load's
 * responses being parsed (and the 1,000 clients' work delayed autocannon's
 * own timing of the dashboard).
 */
export const LIVE_SUBSCRIPTION = `subscription { deploymentUpdated { id status updatedAt project { id } } }`;

export interface LiveFigures {
  streams: number;
  tenants: number;
  mutations: number;
  delivered: number;
  /** Deliveries expected from the mutations committed while measuring (streams of the tenant). */
  expected: number;
  p50: number;
  p95: number;
  p99: number;
  /** From the deployment's updatedAt (written before the rest of the mutation's transaction) to delivery. */
  sinceUpdatedP95: number;
  /** The createDeployment round trip. */
  mutationP95: number;
  /** CPU of the load's own process (the 1,000 clients and the writer), % of a core: it shares the machine with the server. */
  clientCpuPct: number;
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

type Command = { cmd: "start"; url: string; tokens: Tokens; opts: LiveOptions } | { cmd: "measure" } | { cmd: "take" } | { cmd: "stop" };
type Reply = { ready: true } | { figures: LiveFigures } | { failed: string };

/** Starts the live load in a child process; resolves once every stream is open. */
export async function startLiveLoad(url: string, tokens: Tokens, opts: LiveOptions, env: Record<string, string> = {}): Promise<LiveLoad> {
  // `env`: e.g. the REDIS_KEY_PREFIX of the server it loads, whose topics it reads (bench/live-cost.ts runs several).
  const child = fork(import.meta.filename, [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"], env: { ...process.env, ...env } });
  const replies: Reply[] = [];
  const waiters: ((r: Reply) => void)[] = [];
  child.on("message", (m: Reply) => {
    const w = waiters.shift();
    if (w) w(m);
    else replies.push(m);
  });
  const exited = new Promise<Reply>((resolve) => child.once("exit", (code) => resolve({ failed: `live load process exited (${code})` })));
  const ask = async (c: Command): Promise<Reply> => {
    child.send(c);
    const r = await Promise.race([replies.length ? Promise.resolve(replies.shift()!) : new Promise<Reply>((resolve) => waiters.push(resolve)), exited]);
    if ("failed" in r) throw new Error(r.failed);
    return r;
  };
  // NaN (no sample) crosses the IPC channel as null.
  const figures = async (c: Command) =>
    Object.fromEntries(Object.entries((await ask(c) as { figures: LiveFigures }).figures).map(([k, v]) => [k, v ?? NaN])) as unknown as LiveFigures;
  await ask({ cmd: "start", url, tokens, opts });
  return {
    measure: () => void child.send({ cmd: "measure" } satisfies Command),
    take: () => figures({ cmd: "take" }),
    async stop() {
      const f = await figures({ cmd: "stop" });
      await stopChild(child);
      return f;
    },
  };
}

async function stopChild(child: ChildProcess) {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** The load itself, in the child process. */
async function runLiveLoad(url: string, tokens: Tokens, opts: LiveOptions) {
  const tenants = tokens.members.length;
  const perTenant = new Map<string, number>();
  const subs: LiveSubscription[] = [];
  const clients: { dispose(): void | Promise<void> }[] = [];
  let measuring = false;
  let latencies: number[] = [];
  let delivered = 0;
  let mutations = 0;
  let expected = 0;
  let sinceUpdated: number[] = [];
  let roundTrips: number[] = [];
  /** Deployment id -> its commit time (the event's `at`), or the deliveries that came before the event reached this process. */
  const committed = new Map<string, number>();
  const early = new Map<string, number[]>();
  const topics = new Redis(process.env.REDIS_URL!);
  // The live topics are under the server's REDIS_KEY_PREFIX (src/modules/live/bus.ts).
  await topics.psubscribe(`${redisKeyPrefix(process.env)}t:{*}:live`);
  topics.on("pmessage", (_pattern, _channel, message: string) => {
    const e = JSON.parse(message) as { type?: string; id?: string; at?: number };
    if (e.type !== "Deployment" || typeof e.id !== "string" || typeof e.at !== "number") return;
    const id = toGlobalId("Deployment", e.id);
    committed.set(id, e.at);
    for (const t of early.get(id) ?? []) latencies.push(t - e.at);
    early.delete(id);
  });
  const collect = (s: LiveSubscription) => {
    void (async () => {
      for (;;) {
        const m = await s.next(3_600_000).catch(() => null);
        if (!m || m.kind !== "next") return;
        const d = m.payload?.data?.deploymentUpdated;
        if (!d || !measuring) continue;
        delivered++;
        const now = Date.now();
        sinceUpdated.push(now - Date.parse(d.updatedAt));
        const at = committed.get(d.id);
        if (at !== undefined) latencies.push(now - at);
        else early.set(d.id, [...(early.get(d.id) ?? []), now]);
      }
    })();
  };
  const wsUrl = url.replace(/^http/, "ws") + "/graphql";
  for (let i = 0; i < opts.streams; i++) {
    const row = tokens.members[i % tenants]!;
    const member = row[Math.floor(i / tenants) % row.length]!;
    perTenant.set(member.tenant.slug, (perTenant.get(member.tenant.slug) ?? 0) + 1);
    let s: LiveSubscription;
    if (i % 2 === 0) {
      const { client } = wsClient(wsUrl, { authorization: `Bearer ${member.token}` });
      clients.push(client);
      s = wsSubscribe(client, { query: LIVE_SUBSCRIPTION });
    } else {
      s = await sseSubscribe(fetch, `${url}/graphql`, { query: LIVE_SUBSCRIPTION }, { authorization: `Bearer ${member.token}` });
    }
    subs.push(s);
    collect(s);
  }

  let n = 0;
  // mutationsPerS 0: the streams alone, idle (bench/live-cost.ts).
  const writer = opts.mutationsPerS <= 0 ? undefined : setInterval(() => {
    const row = tokens.developers[n % tokens.developers.length]!;
    const dev = row[Math.floor(n / tokens.developers.length) % row.length]!;
    const projectId = dev.tenant.projectIds[n % dev.tenant.projectIds.length]!;
    n++;
    const counted = measuring;
    const sent = Date.now();
    void fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${dev.token}` },
      body: JSON.stringify({ query: CREATE_DEPLOYMENT_MUTATION, variables: { input: { projectId: toGlobalId("Project", projectId), branch: "live" } } }),
    })
      .then((r) => r.json())
      .then((body: any) => {
        if (body.errors || !counted) return;
        roundTrips.push(Date.now() - sent);
        mutations++;
        expected += perTenant.get(dev.tenant.slug) ?? 0;
      })
      .catch(() => {});
  }, 1000 / opts.mutationsPerS);

  let cpu0 = process.cpuUsage();
  let since = Date.now();
  const take = (): LiveFigures => {
    const used = process.cpuUsage(cpu0);
    const clientCpuPct = (used.user + used.system) / 10 / Math.max(1, Date.now() - since);
    cpu0 = process.cpuUsage();
    since = Date.now();
    const sorted = Float64Array.from(latencies).sort();
    const f = {
      streams: opts.streams,
      tenants: perTenant.size,
      mutations,
      delivered,
      expected,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      sinceUpdatedP95: percentile(Float64Array.from(sinceUpdated).sort(), 95),
      mutationP95: percentile(Float64Array.from(roundTrips).sort(), 95),
      clientCpuPct,
    };
    latencies = [];
    sinceUpdated = [];
    roundTrips = [];
    committed.clear();
    early.clear();
    delivered = mutations = expected = 0;
    return f;
  };
  return {
    measure() {
      measuring = true;
      cpu0 = process.cpuUsage();
      since = Date.now();
    },
    take,
    async stop() {
      measuring = false;
      clearInterval(writer);
      const f = take();
      topics.disconnect();
      for (const s of subs) s.close();
      await Promise.allSettled(clients.map((c) => c.dispose()));
      return f;
    },
  };
}

if (process.argv[1] === import.meta.filename && process.send) {
  const reply = (r: Reply) => process.send!(r);
  let load: Awaited<ReturnType<typeof runLiveLoad>> | undefined;
  process.on("message", (c: Command) => {
    void (async () => {
      if (c.cmd === "start") {
        load = await runLiveLoad(c.url, c.tokens, c.opts);
        reply({ ready: true });
      } else if (c.cmd === "measure") load?.measure();
      else if (c.cmd === "take") reply({ figures: load!.take() });
      else if (c.cmd === "stop") reply({ figures: await load!.stop() });
    })().catch((err: unknown) => reply({ failed: String((err as Error)?.stack ?? err) }));
  });
  process.on("SIGTERM", () => process.exit(0));
}
