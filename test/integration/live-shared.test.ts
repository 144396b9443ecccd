import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Role } from "../../src/generated/prisma/enums.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createDeployment as deploy, subscriptionsUsed as used } from "../helpers/live-server.ts";
import { eventually } from "../helpers/eventually.ts";
import { sseSubscribe, type LiveSubscription } from "../helpers/live-client.ts";

/**
 * One execution per class of equal subscribers (docs/live-updates.md,
 * "Eighth round", src/http/use-live-delivery.ts): subscribers of one tenant
 * whose answers are provably equal share an event's execution; subscribers
 * whose answers may differ (another document, another alias, the role
 * where a field's @auth asks for more than VIEWER, the caller where the
 * selection reaches a User) never do; a removed or downgraded member's
 * stream still ends although its class goes on. Counted by
 * tenantgraph_live_results_total (executed / shared).
 */

const METRICS_TOKEN = "metrics-token-live-shared-0123";
const PLAIN = `subscription { deploymentUpdated { id status project { id name } } }`;
const ALIASED = `subscription { deploymentUpdated { key: id state: status } }`;
const CREATOR = `subscription { deploymentUpdated { id createdBy { email } } }`;
const AUDIT = `subscription { auditLogAppended { id action targetType } }`;

let t: TestApp;
const open: LiveSubscription[] = [];

beforeAll(async () => {
  t = await createTestApp({ metricsToken: METRICS_TOKEN });
}, 120_000);

afterAll(async () => {
  for (const s of open) s.close();
  await t?.close();
});

async function subscribe(query: string, token: string) {
  const s = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query }, { authorization: `Bearer ${token}` });
  expect(s.status).toBe(200);
  open.push(s);
  return s;
}

const member = (slug: string, role: Role) => t.memberToken(slug, role);

/** The results counted so far: executed for a subscriber, shared from its class. */
async function results(): Promise<{ executed: number; shared: number }> {
  const res = await t.app.fetch("http://localhost/metrics", { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  const text = await res.text();
  const of = (outcome: string) => Number(text.match(new RegExp(`tenantgraph_live_results_total\\{outcome="${outcome}"\\} (\\d+)`))?.[1] ?? 0);
  return { executed: of("executed"), shared: of("shared") };
}

const streamsOf = (slug: string) => used(t, slug);

/**
 * Counts over `fn` (every subscriber has taken its event by the time it
 * returns), once the streams of an earlier test are gone: a closed client's
 * stream ends when the server notices, and until then it takes events too.
 */
async function counted(open: Record<string, number>, fn: () => Promise<void>) {
  for (const [slug, n] of Object.entries(open)) await eventually(`${n} streams of ${slug}`, async () => (await streamsOf(slug)) === n);
  const before = await results();
  await fn();
  const after = await results();
  return { executed: after.executed - before.executed, shared: after.shared - before.shared };
}

const createDeployment = (slug: string) => deploy(t, slug);

/** A new member of `slug` with `role`: its email and token. */
async function newMember(slug: string, role: Role) {
  const email = `shared-${randomUUID()}@${slug}.test`;
  const tenantId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } })).id;
  const user = await t.clients.platform.user.create({ data: { email, authSubject: email, memberships: { create: { tenantId, role } } }, include: { memberships: true } });
  return { email, token: await t.token(email, slug), membershipId: user.memberships[0]!.id };
}

async function membershipGlobalId(slug: string, email: string): Promise<string> {
  const r = await t.gql(`{ members(first: 50) { edges { node { id user { email } } } } }`, { token: await member(slug, "OWNER") });
  return r.body.data.members.edges.find((e: any) => e.node.user.email === email).node.id;
}

async function expectClosedWith(s: LiveSubscription, code: string) {
  const m = await s.next();
  expect([m.kind, m.payload?.errors?.[0]?.extensions?.code]).toEqual(["next", code]);
  expect((await s.next()).kind).toBe("complete");
}

describe("one execution per class of equal subscribers", () => {
  it("members of every role with the same document share one execution, each getting the query's answer", async () => {
    const streams = [await subscribe(PLAIN, await member("acme", "VIEWER")), await subscribe(PLAIN, await member("acme", "ADMIN")), await subscribe(PLAIN, await member("acme", "OWNER"))];
    let id = "";
    const datas: unknown[] = [];
    const n = await counted({ acme: 3 }, async () => {
      id = await createDeployment("acme");
      for (const s of streams) datas.push(await s.nextData());
    });
    expect(n).toEqual({ executed: 1, shared: 2 });
    expect((datas[0] as any).deploymentUpdated.id).toBe(id);
    expect(datas[1]).toEqual(datas[0]);
    expect(datas[2]).toEqual(datas[0]);
    for (const s of streams) s.close();
  });

  it("another document or another alias is another class: each subscriber gets its own shape", async () => {
    const plain = await subscribe(PLAIN, await member("acme", "VIEWER"));
    const aliased = await subscribe(ALIASED, await member("acme", "VIEWER"));
    let id = "";
    const n = await counted({ acme: 2 }, async () => {
      id = await createDeployment("acme");
      expect(Object.keys((await plain.nextData()).deploymentUpdated).sort()).toEqual(["id", "project", "status"]);
      expect(await aliased.nextData()).toEqual({ deploymentUpdated: { key: id, state: "QUEUED" } });
    });
    expect(n).toEqual({ executed: 2, shared: 0 });
    plain.close();
    aliased.close();
  });

  it("a selection reaching a User keeps callers apart; one caller's two streams share", async () => {
    const viewer = await member("globex", "VIEWER");
    const streams = [await subscribe(CREATOR, viewer), await subscribe(CREATOR, viewer), await subscribe(CREATOR, await member("globex", "ADMIN"))];
    const n = await counted({ globex: 3 }, async () => {
      await createDeployment("globex");
      for (const s of streams) expect((await s.nextData()).deploymentUpdated.createdBy.email).toMatch(/@/);
    });
    expect(n).toEqual({ executed: 2, shared: 1 });
    for (const s of streams) s.close();
  });

  it("a field above VIEWER keeps roles apart, and a downgrade ends the demoted member's streams while its class goes on", async () => {
    const admin = await newMember("wayne", "ADMIN");
    const mine = [await subscribe(AUDIT, admin.token), await subscribe(AUDIT, admin.token)];
    const other = await newMember("wayne", "ADMIN");
    const peer = await subscribe(AUDIT, other.token);
    const owner = await subscribe(AUDIT, await member("wayne", "OWNER"));
    // One entry (the deployment's): two ADMINs share, the OWNER is executed for.
    const n = await counted({ wayne: 4 }, async () => {
      await createDeployment("wayne");
      for (const s of [...mine, peer, owner]) expect((await s.nextData()).auditLogAppended.action).toBe("deployment.create");
    });
    expect(n).toEqual({ executed: 2, shared: 2 });
    const r = await t.gql(`mutation($m: ID!) { updateMemberRole(input: { membershipId: $m, role: VIEWER }) { membership { role } } }`, {
      token: await member("wayne", "OWNER"),
      variables: { m: await membershipGlobalId("wayne", admin.email) },
    });
    expect(r.body.errors).toBeUndefined();
    for (const s of mine) await expectClosedWith(s, "FORBIDDEN");
    // The role change's own entry reaches the others, and only them.
    expect((await peer.nextData()).auditLogAppended.action).toBe("member.updateRole");
    expect((await owner.nextData()).auditLogAppended.action).toBe("member.updateRole");
    peer.close();
    owner.close();
  });

  it("a removed member's stream ends; the member it shared with still gets the next event", async () => {
    const leaving = await newMember("acme", "VIEWER");
    const gone = await subscribe(PLAIN, leaving.token);
    const stays = await subscribe(PLAIN, await member("acme", "VIEWER"));
    const r = await t.gql(`mutation($m: ID!) { removeMember(input: { membershipId: $m }) { removedMembershipId } }`, {
      token: await member("acme", "OWNER"),
      variables: { m: await membershipGlobalId("acme", leaving.email) },
    });
    expect(r.body.errors).toBeUndefined();
    await expectClosedWith(gone, "TENANT_ACCESS_DENIED");
    const id = await createDeployment("acme");
    expect((await stays.nextData()).deploymentUpdated.id).toBe(id);
    expect(gone.seen.filter((m) => m.kind === "next")).toHaveLength(1);
    stays.close();
  });

  it("never across tenants: the same document in two tenants is two classes, each its own tenant's node", async () => {
    const a = await subscribe(PLAIN, await member("acme", "VIEWER"));
    const b = await subscribe(PLAIN, await member("globex", "VIEWER"));
    const n = await counted({ acme: 1, globex: 1 }, async () => {
      const ida = await createDeployment("acme");
      const idb = await createDeployment("globex");
      expect((await a.nextData()).deploymentUpdated.id).toBe(ida);
      expect((await b.nextData()).deploymentUpdated.id).toBe(idb);
    });
    expect(n).toEqual({ executed: 2, shared: 0 });
    expect(a.seen.filter((m) => m.kind === "next")).toHaveLength(1);
    expect(b.seen.filter((m) => m.kind === "next")).toHaveLength(1);
    a.close();
    b.close();
  });
});
