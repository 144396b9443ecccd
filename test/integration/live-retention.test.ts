import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Delivery } from "../../src/modules/live/delivery.ts";
import { LiveStream } from "../../src/modules/live/stream.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { sseSubscribe, type LiveSubscription } from "../helpers/live-client.ts";

/**
 * A slow consumer does not keep other subscribers' results alive (review of
 * the shared live results, docs/live-updates.md "Eighth round"): one
 * Delivery is handed to every stream of the tenant, and its class results
 * were kept for as long as any stream still had the event queued, so one
 * non-reading stream pinned every class's result of up to its buffer's
 * events. Now the results are let go once the event's fan-out is over
 * (Delivery.finish); a later taker executes for itself.
 */
let t: TestApp;
const open: LiveSubscription[] = [];
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  for (const s of open) s.close();
  await t?.close();
});

const selection = (i: number) => `subscription { deploymentUpdated { a${i}: id project { deployments(first: 20) { edges { node { id status createdAt } } } } } }`;

describe("live results and a slow consumer", () => {
  it("the events queued for a stream that does not read hold no class results", async () => {
    const streams = new Set<LiveStream>();
    const push = LiveStream.prototype.push;
    const spy = vi.spyOn(LiveStream.prototype, "push").mockImplementation(function (this: LiveStream, d: Delivery) {
      streams.add(this);
      return push.call(this, d);
    });
    try {
      const viewer = await t.memberToken("wayne", "VIEWER");
      const dev = await t.memberToken("wayne", "DEVELOPER");
      const p = await t.gql(`{ projects(first: 1) { edges { node { id } } } }`, { token: viewer });
      const projectId = p.body.data.projects.edges[0].node.id;
      const readers: LiveSubscription[] = [];
      for (let i = 0; i < 3; i++) {
        const s = await sseSubscribe((u, init) => t.app.fetch(u, init), "http://localhost/graphql", { query: selection(i) }, { authorization: `Bearer ${viewer}` });
        open.push(s);
        readers.push(s);
      }
      // The slow one: its response body is never read.
      const slow = await t.app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { accept: "text/event-stream", "content-type": "application/json", authorization: `Bearer ${viewer}` },
        body: JSON.stringify({ query: `subscription { deploymentUpdated { id } }` }),
      });
      expect(slow.status).toBe(200);
      const events = 5;
      for (let e = 0; e < events; e++) {
        const r = await t.gql(`mutation($p: ID!) { createDeployment(input: { projectId: $p, branch: "main" }) { deployment { id } } }`, { token: dev, variables: { p: projectId } });
        expect(r.body.errors).toBeUndefined();
      }
      for (const s of readers) for (let e = 0; e < events; e++) expect((await s.nextData()) as object).toHaveProperty("deploymentUpdated");
      const queued = [...streams].flatMap((s) => (s as unknown as { queue: Delivery[] }).queue);
      expect(queued.length).toBeGreaterThan(0);
      expect(queued.reduce((n, d) => n + d.results.size, 0)).toBe(0);
      void slow.body?.cancel().catch(() => {});
    } finally {
      spy.mockRestore();
    }
  });
});
