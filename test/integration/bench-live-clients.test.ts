import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sseStream, wsStream, type BenchStream } from "../../bench/live-clients.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { listenLive, subscriptionsUsed as used } from "../helpers/live-server.ts";

/**
 * The bench's lean stream clients (bench/live-clients.ts) against the real
 * server over both transports: each receives a committed deployment's event
 * as the bench's subscription selects it, a refused credential is a
 * rejection (not a stream that silently never delivers), and close() ends
 * the stream on the server's side too.
 */

const QUERY = `subscription { deploymentUpdated { id status updatedAt project { id } } }`;

let t: TestApp;
let live: Awaited<ReturnType<typeof listenLive>>;
let base: string;

beforeAll(async () => {
  t = await createTestApp();
  live = await listenLive(t);
  base = live.base;
}, 120_000);

afterAll(async () => {
  await live?.close();
  await t?.close();
});

const subscriptionsUsed = (slug: string) => used(t, slug);

/** Collects what a stream receives. */
function inbox() {
  const got = { ids: [] as string[], statuses: [] as string[], ends: [] as string[] };
  return {
    got,
    handlers: {
      onNext(payload: { data?: any }) {
        const d = payload.data?.deploymentUpdated;
        if (d) {
          got.ids.push(d.id);
          got.statuses.push(d.status);
        }
      },
      onEnd(reason: string) {
        got.ends.push(reason);
      },
    },
  };
}

describe("the bench's stream clients", () => {
  it("both transports receive a committed deployment, and close() ends the stream", async () => {
    const authorization = `Bearer ${await t.memberToken("acme", "VIEWER")}`;
    const sse = inbox();
    const socket = inbox();
    const streams: BenchStream[] = [
      await sseStream(`http://${base}`, QUERY, { authorization }, sse.handlers),
      await wsStream(`ws://${base}`, QUERY, { authorization }, socket.handlers),
    ];
    const projects = await t.gql(`{ projects(first: 1) { edges { node { id } } } }`, { token: await t.memberToken("acme", "VIEWER") });
    const projectId = projects.body.data.projects.edges[0].node.id;
    const created = await t.gql(`mutation($p: ID!) { createDeployment(input: { projectId: $p, branch: "main" }) { deployment { id } } }`, {
      token: await t.memberToken("acme", "DEVELOPER"),
      variables: { p: projectId },
    });
    expect(created.body.errors).toBeUndefined();
    const id = created.body.data.createDeployment.deployment.id;
    await expect.poll(() => [sse.got.ids.includes(id), socket.got.ids.includes(id)], { timeout: 20_000 }).toEqual([true, true]);
    expect(sse.got.statuses[sse.got.ids.indexOf(id)]).toMatch(/^[A-Z_]+$/);
    await Promise.all(streams.map((s) => s.close()));
    expect([sse.got.ends.length, socket.got.ends.length]).toEqual([1, 1]);
    // Both slots freed on the server's side (the tenant's SUBSCRIPTIONS usage back to none).
    await expect.poll(() => subscriptionsUsed("acme"), { timeout: 20_000 }).toBe(0);
  }, 60_000);

  it("a refused credential rejects the open on both transports", async () => {
    const bad = { authorization: "Bearer not-a-token" };
    await expect(sseStream(`http://${base}`, QUERY, bad, inbox().handlers)).rejects.toThrow(/HTTP 401/);
    await expect(wsStream(`ws://${base}`, QUERY, bad, inbox().handlers)).rejects.toThrow(/4403/);
  }, 30_000);
});
