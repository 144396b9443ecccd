import { percentile } from "./load.ts";
import { CREATE_DEPLOYMENT_MUTATION, toGlobalId, type Tokens } from "./scenarios.ts";
import { sseSubscribe, wsClient, wsSubscribe, type LiveSubscription } from "../test/helpers/live-client.ts";

/**
 * The live-updates load (SPEC section 10): `streams` open subscriptions
 * (deploymentUpdated, half over graphql-ws, half over SSE) spread evenly over
 * the tenants, and a writer committing `mutationsPerS` createDeployment
 * mutations a second, each tenant in turn. Delivery latency is the time from
 * the deployment's `updatedAt` (written in the mutation's transaction, just
 * before its commit) to the event's arrival at the subscriber, on the same
 * machine clock: it slightly over-states commit-to-delivery.
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
}

export interface LiveLoad {
  /** Starts counting deliveries (after the warm-up). */
  measure(): void;
  stop(): Promise<LiveFigures>;
}

export async function startLiveLoad(url: string, tokens: Tokens, opts: { streams: number; mutationsPerS: number }): Promise<LiveLoad> {
  const tenants = tokens.members.length;
  const perTenant = new Map<string, number>();
  const subs: LiveSubscription[] = [];
  const clients: { dispose(): void | Promise<void> }[] = [];
  let measuring = false;
  const latencies: number[] = [];
  let delivered = 0;
  const collect = (s: LiveSubscription) => {
    void (async () => {
      for (;;) {
        const m = await s.next(3_600_000).catch(() => null);
        if (!m || m.kind !== "next") return;
        const d = m.payload?.data?.deploymentUpdated;
        if (!d || !measuring) continue;
        delivered++;
        latencies.push(Date.now() - Date.parse(d.updatedAt));
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

  let mutations = 0;
  let expected = 0;
  let n = 0;
  const writer = setInterval(() => {
    const row = tokens.developers[n % tokens.developers.length]!;
    const dev = row[Math.floor(n / tokens.developers.length) % row.length]!;
    const projectId = dev.tenant.projectIds[n % dev.tenant.projectIds.length]!;
    n++;
    const counted = measuring;
    void fetch(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${dev.token}` },
      body: JSON.stringify({ query: CREATE_DEPLOYMENT_MUTATION, variables: { input: { projectId: toGlobalId("Project", projectId), branch: "live" } } }),
    })
      .then((r) => r.json())
      .then((body: any) => {
        if (body.errors || !counted) return;
        mutations++;
        expected += perTenant.get(dev.tenant.slug) ?? 0;
      })
      .catch(() => {});
  }, 1000 / opts.mutationsPerS);

  return {
    measure() {
      measuring = true;
    },
    async stop() {
      measuring = false;
      clearInterval(writer);
      for (const s of subs) s.close();
      await Promise.allSettled(clients.map((c) => c.dispose()));
      const sorted = Float64Array.from(latencies).sort();
      return {
        streams: opts.streams,
        tenants: perTenant.size,
        mutations,
        delivered,
        expected,
        p50: percentile(sorted, 50),
        p95: percentile(sorted, 95),
        p99: percentile(sorted, 99),
      };
    },
  };
}
