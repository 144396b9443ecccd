import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.ts";
import { demoEmail } from "../../src/db/seed.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { TEST_JWT_SECRET } from "../helpers/app.ts";
import { eventually } from "../helpers/eventually.ts";
import { startLiveApp, type LiveApp } from "../helpers/live-app.ts";
import { sseSubscribe, type LiveSubscription } from "../helpers/live-client.ts";
import type { OwnRedis } from "../helpers/own-redis.ts";
import { spreadDemoTenants } from "../helpers/placements.ts";

/**
 * Live events of a placed (SCHEMA) tenant across a Redis restart
 * (docs/placement.md "Live updates"): the hub's subscriber connection
 * re-subscribes by itself, and a subscriber of globex (in a schema of its
 * own) goes on receiving its tenant's events, read in its placement; or, if
 * its stream was closed meanwhile, it is told to reconnect with a coded
 * error and receives on its new stream. A Redis of the test's own, killed
 * and started again (test/helpers/own-redis.ts).
 */

const DEPLOYMENTS = `subscription { deploymentUpdated { id status project { id } } }`;

describe("live events of a SCHEMA tenant across a Redis restart", () => {
  let live: LiveApp;
  let redis: OwnRedis;
  let app: App;
  const open: LiveSubscription[] = [];

  beforeAll(async () => {
    // globex in a schema, wayne in a database of their own.
    live = await startLiveApp(spreadDemoTenants);
    ({ redis, app } = live);
  }, 120_000);

  afterAll(async () => {
    for (const s of open) s.close();
    await live?.close();
  });

  const token = (role: "VIEWER" | "DEVELOPER") => signDevToken({ secret: TEST_JWT_SECRET, sub: demoEmail(role, "globex"), tenant: "globex", ttl: "10m" });
  const gql = async (query: string, variables?: unknown) => {
    const res = await app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await token("DEVELOPER")}` },
      body: JSON.stringify({ query, variables }),
    });
    return (await res.json()) as { data?: any; errors?: any[] };
  };
  const subscribe = async () => {
    const s = await sseSubscribe((url, init) => app.fetch(url, init), "http://localhost/graphql", { query: DEPLOYMENTS }, { authorization: `Bearer ${await token("VIEWER")}` });
    open.push(s);
    expect(s.status).toBe(200);
    return s;
  };
  const deploy = async (projectId: string) => {
    const r = await gql(`mutation($p: ID!) { createDeployment(input: { projectId: $p, branch: "redis" }) { deployment { id } } }`, { p: projectId });
    expect(r.errors).toBeUndefined();
    return r.data.createDeployment.deployment.id as string;
  };
  /** Whether the hub's subscriber connection is subscribed on the Redis (channels or patterns). */
  const subscribed = async () => {
    const [patterns, channels] = await Promise.all([redis.client.call("PUBSUB", "NUMPAT"), redis.client.call("PUBSUB", "CHANNELS")]);
    return Number(patterns) + (channels as unknown[]).length > 0;
  };

  it("a subscriber keeps receiving its tenant's events after Redis restarts (or is told to reconnect, with a code, and receives on its new stream)", async () => {
    const project = (await gql(`{ projects(first: 1) { edges { node { id } } } }`)).data.projects.edges[0].node.id as string;
    let stream = await subscribe();
    const before = await deploy(project);
    expect((await stream.nextData()).deploymentUpdated).toMatchObject({ id: before, status: "QUEUED", project: { id: project } });

    await redis.save();
    await redis.restartFromDump();
    // The hub's subscriber connection re-subscribes by itself.
    await eventually("the hub re-subscribed after the restart", subscribed, 30_000);

    const after = await deploy(project);
    let m = await stream.next();
    if (m.kind === "next" && m.payload.errors) {
      // Closed to reconnect: the code says so, and a new stream receives.
      expect(m.payload.errors[0].extensions).toMatchObject({ code: "SERVICE_UNAVAILABLE", reconnect: true });
      stream = await subscribe();
      const again = await deploy(project);
      expect((await stream.nextData()).deploymentUpdated.id).toBe(again);
      return;
    }
    expect(m.kind).toBe("next");
    expect(m.payload.data.deploymentUpdated).toMatchObject({ id: after, status: "QUEUED", project: { id: project } });
    // And the one after that too: the stream is healthy, not a last gasp.
    const next = await deploy(project);
    m = await stream.next();
    expect(m.payload?.data?.deploymentUpdated?.id).toBe(next);
  }, 120_000);
});
