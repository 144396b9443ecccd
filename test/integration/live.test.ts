import { randomUUID } from "node:crypto";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { LiveHub } from "../../src/modules/live/hub.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { createTestApp, tenantIdsBySlug, testAppDeps, type TestApp } from "../helpers/app.ts";
import { createDeployment as deploy, subscriptionsUsed as used } from "../helpers/live-server.ts";
import { sseSubscribe, type LiveSubscription } from "../helpers/live-client.ts";
import { createSqlCounter } from "../helpers/sql-counter.ts";
import { readEvents } from "../../src/modules/live/event-read.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/**
 * Subscriptions in one process (SPEC section 10): events after commit,
 * re-read with the subscriber's own authorization, never another tenant's,
 * streams closed with a coded error when access ends, the SUBSCRIPTIONS
 * quota, slow consumers and shutdown. Across processes and over WebSocket:
 * live-replicas.test.ts.
 */

const DEPLOYMENTS = `subscription($projectId: ID) { deploymentUpdated(projectId: $projectId) { id status project { id name } createdBy { email } } }`;
const WORKFLOWS = `subscription { workflowUpdated { id name status } }`;
const AUDIT = `subscription { auditLogAppended { id action targetType targetId actorLabel } }`;

let t: TestApp;
let ids: Record<string, string>;
const open: LiveSubscription[] = [];

beforeAll(async () => {
  t = await createTestApp();
  ids = await tenantIdsBySlug(t);
}, 120_000);

afterAll(async () => {
  for (const s of open) s.close();
  await t?.close();
});

async function subscribe(query: string, token: string, variables?: Record<string, unknown>, headers: Record<string, string> = {}) {
  const s = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query, variables }, { authorization: `Bearer ${token}`, ...headers });
  open.push(s);
  return s;
}

async function projectsOf(slug: string): Promise<{ id: string; name: string }[]> {
  const r = await t.gql(`{ projects(first: 5) { edges { node { id name } } } }`, { token: await t.memberToken(slug, "VIEWER") });
  return r.body.data.projects.edges.map((e: any) => e.node);
}

const createDeployment = (slug: string, projectId: string) => deploy(t, slug, { projectId });

const subscriptionsUsed = (slug: string) => used(t, slug);

async function memberId(slug: string, email: string): Promise<string> {
  const r = await t.gql(`{ members(first: 50) { edges { node { id user { email } } } } }`, { token: await t.memberToken(slug, "OWNER") });
  return r.body.data.members.edges.find((e: any) => e.node.user.email === email).node.id;
}

type Fetcher = { fetch: (url: string, init: RequestInit) => Promise<Response> | Response };

async function call(app: Fetcher, query: string, headers: Record<string, string>, variables?: Record<string, unknown>) {
  const res = await app.fetch("http://localhost/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: any[] };
  expect(body.errors).toBeUndefined();
  return body.data;
}

/** A new ADMIN key of the tenant of `owner` (a bearer token): its id and secret. */
async function createKey(app: Fetcher, owner: string, name: string): Promise<{ id: string; secret: string }> {
  const data = await call(app, `mutation($n: String!) { createApiKey(input: { name: $n, role: ADMIN }) { apiKey { id } secret } }`, { authorization: `Bearer ${owner}` }, { n: name });
  return { id: data.createApiKey.apiKey.id, secret: data.createApiKey.secret };
}

/** Rotates the key; the new secret. */
async function rotateKey(app: Fetcher, owner: string, id: string, gracePeriodMinutes: number): Promise<string> {
  const data = await call(app, `mutation($i: RotateApiKeyInput!) { rotateApiKey(input: $i) { secret } }`, { authorization: `Bearer ${owner}` }, { i: { id, gracePeriodMinutes } });
  return data.rotateApiKey.secret;
}

async function keySubscribe(app: Fetcher, query: string, secret: string) {
  const s = await sseSubscribe((url, init) => app.fetch(url, init), "http://localhost/graphql", { query }, { "x-api-key": secret });
  open.push(s);
  expect(s.status).toBe(200);
  return s;
}

async function createWorkflow(app: Fetcher, slug: string, name: string) {
  await call(app, `mutation($n: String!) { createWorkflow(input: { name: $n }) { workflow { id } } }`, { authorization: `Bearer ${await t.memberToken(slug, "DEVELOPER")}` }, { n: name });
}

/** A stream's end: a `next` carrying the coded error, then `complete`. */
async function expectClosedWith(s: LiveSubscription, code: string) {
  const m = await s.next();
  expect([m.kind, m.payload?.errors?.[0]?.extensions?.code]).toEqual(["next", code]);
  expect(m.payload.errors[0].extensions.http).toBeUndefined();
  expect((await s.next()).kind).toBe("complete");
  return m.payload.errors[0];
}

describe("deploymentUpdated over SSE", () => {
  it("delivers new deployments and status changes as a query would return them", async () => {
    const [project] = await projectsOf("acme");
    const s = await subscribe(DEPLOYMENTS, await t.memberToken("acme", "VIEWER"));
    expect(s.status).toBe(200);
    const id = await createDeployment("acme", project!.id);
    const created = await s.nextData();
    expect(created.deploymentUpdated).toEqual({ id, status: "QUEUED", project: project, createdBy: { email: "developer@acme.test" } });
    const r = await t.gql(`mutation($id: ID!) { updateDeploymentStatus(input: { id: $id, status: READY }) { deployment { id } } }`, {
      token: await t.memberToken("acme", "DEVELOPER"),
      variables: { id },
    });
    expect(r.body.errors).toBeUndefined();
    expect((await s.nextData()).deploymentUpdated).toMatchObject({ id, status: "READY" });
    s.close();
  });

  it("never delivers another tenant's event", async () => {
    const [acmeProject] = await projectsOf("acme");
    const [globexProject] = await projectsOf("globex");
    const globex = await subscribe(DEPLOYMENTS, await t.memberToken("globex", "VIEWER"));
    const acme = await subscribe(DEPLOYMENTS, await t.memberToken("acme", "VIEWER"));
    const acmeDeployment = await createDeployment("acme", acmeProject!.id);
    expect((await acme.nextData()).deploymentUpdated.id).toBe(acmeDeployment);
    const globexDeployment = await createDeployment("globex", globexProject!.id);
    // globex's first event is its own deployment: acme's was never sent to it.
    expect((await globex.nextData()).deploymentUpdated.id).toBe(globexDeployment);
    expect(globex.seen).toHaveLength(1);
    globex.close();
    acme.close();
  });

  it("filters by project; a project id of another tenant matches nothing", async () => {
    const [p1, p2] = await projectsOf("acme");
    const [globexProject] = await projectsOf("globex");
    const s = await subscribe(DEPLOYMENTS, await t.memberToken("acme", "VIEWER"), { projectId: p2!.id });
    const foreign = await subscribe(DEPLOYMENTS, await t.memberToken("acme", "VIEWER"), { projectId: globexProject!.id });
    await createDeployment("acme", p1!.id);
    const wanted = await createDeployment("acme", p2!.id);
    expect((await s.nextData()).deploymentUpdated).toMatchObject({ id: wanted, project: { id: p2!.id } });
    expect(s.seen).toHaveLength(1);
    s.close();
    const bad = await subscribe(DEPLOYMENTS, await t.memberToken("acme", "VIEWER"), { projectId: "%%%" });
    const m = await bad.next();
    expect(m.payload?.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "projectId" });
    expect(foreign.seen).toHaveLength(0);
    foreign.close();
  });

  it("refuses without credentials, and a workflow stream gets workflows only", async () => {
    const anonymous = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query: DEPLOYMENTS }, { "x-tenant-id": "acme" });
    const m = await anonymous.next();
    expect(JSON.stringify(m.payload)).toContain("UNAUTHENTICATED");
    const w = await subscribe(WORKFLOWS, await t.memberToken("acme", "VIEWER"));
    const [project] = await projectsOf("acme");
    await createDeployment("acme", project!.id);
    const r = await t.gql(`mutation { createWorkflow(input: { name: "live-wf" }) { workflow { id } } }`, { token: await t.memberToken("acme", "DEVELOPER") });
    expect((await w.nextData()).workflowUpdated).toEqual({ id: r.body.data.createWorkflow.workflow.id, name: "live-wf", status: "ACTIVE" });
    w.close();
  });
});

describe("delivery reads", () => {
  /** What the live pool and the request pools receive while `streams` subscribers of acme get one new deployment. */
  async function deliveryStatements(streams: number) {
    const [project] = await projectsOf("acme");
    // An earlier test's acme stream still open would load its own fields
    // (createdBy) on the live pool inside the window: close them all and
    // wait until their slots are given back (asynchronously).
    for (const s of open.splice(0)) s.close();
    await expect.poll(() => subscriptionsUsed("acme"), { timeout: 10_000 }).toBe(0);
    const subs = await Promise.all(Array.from({ length: streams }, async () => subscribe(LIGHT, await t.memberToken("acme", "VIEWER"))));
    const counter = createSqlCounter({ live: t.clients.livePool, app: Object.values(t.clients.appPools) });
    counter.start();
    let id: string;
    try {
      id = await createDeployment("acme", project!.id);
      for (const s of subs) expect((await s.nextData()).deploymentUpdated).toEqual({ id, status: "QUEUED", project });
    } finally {
      var statements = counter.stop();
      counter.detach();
      for (const s of subs) s.close();
    }
    return { live: statements.filter((s) => s.pool === "live").map((s) => s.sql), app: statements.filter((s) => s.pool === "app").length };
  }
  const LIGHT = `subscription { deploymentUpdated { id status project { id name } } }`;

  it("an event is read once for all of a tenant's streams, in one message on the live pool, the node's project with it", async () => {
    const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
    // The hub's clock, which the credentials are judged at (with PostgreSQL's time).
    const time = /'\d{4}-\d\d-\d\dT[\d:.]+Z'::timestamptz/g;
    const shape = (sql: string) => sql.replace(uuid, "<uuid>").replace(time, "<time>");
    const one = await deliveryStatements(1);
    const five = await deliveryStatements(5);
    // One message for 5 subscribers as for 1: the access facts of all of them, the node, its project.
    expect(five.live.map(shape)).toEqual(one.live.map(shape));
    expect(five.live).toHaveLength(1);
    expect(five.live[0]).toMatch(/^BEGIN READ ONLY;.*FROM tenants t WHERE t\.id.*FROM deployments WHERE.*FROM projects WHERE.*COMMIT$/);
    // Deliveries take nothing from the request pools: only the mutation's statements are there.
    expect(five.app).toBe(one.app);
  });

  it("a stream's later events resolve the project from the shared read too (the selection is planned on its first event)", async () => {
    const [project] = await projectsOf("acme");
    for (const s of open.splice(0)) s.close();
    await expect.poll(() => subscriptionsUsed("acme"), { timeout: 10_000 }).toBe(0);
    const s = await subscribe(LIGHT, await t.memberToken("acme", "VIEWER"));
    const counter = createSqlCounter({ live: t.clients.livePool });
    counter.start();
    try {
      for (let i = 0; i < 3; i++) {
        const id = await createDeployment("acme", project!.id);
        expect((await s.nextData()).deploymentUpdated).toEqual({ id, status: "QUEUED", project });
      }
    } finally {
      var statements = counter.stop();
      counter.detach();
      s.close();
    }
    // One read per event, the shared one; nothing read for the subscriber (its project comes from that read).
    // (The counter may also see the mutations' own statements: only the reads are looked at.)
    const sqls = statements.map((x) => x.sql);
    expect(sqls.filter((q) => q.startsWith("BEGIN READ ONLY;"))).toHaveLength(3);
    expect(sqls.filter((q) => /REPEATABLE READ|"public"\."(projects|deployments)"/.test(q))).toEqual([]);
  });

  it("the shared read returns each node as Prisma does (the rows a query resolves), with its project, in its tenant only", async () => {
    const acme = ids.acme!;
    const deployment = await t.clients.platform.deployment.findFirstOrThrow({ where: { tenantId: acme }, include: { project: true } });
    const workflow = await t.clients.platform.workflow.findFirstOrThrow({ where: { tenantId: acme }, include: { project: true } });
    const entry = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { tenantId: acme } });
    const foreign = await t.clients.platform.deployment.findFirstOrThrow({ where: { tenantId: ids.globex! } });
    const read = await readEvents(t.clients.livePool, acme, [], [
      { type: "Deployment", id: deployment.id, at: 0 },
      { type: "Deployment", id: foreign.id, at: 0 },
      { type: "Workflow", id: workflow.id, at: 0 },
      { type: "AuditLogEntry", id: entry.id, at: 0 },
    ]);
    expect(read.facts.status).toBe("ACTIVE");
    expect(read.nodes.get(`Deployment:${deployment.id}`)).toEqual(deployment);
    expect(read.nodes.get(`Workflow:${workflow.id}`)).toEqual(workflow);
    expect(read.nodes.get(`AuditLogEntry:${entry.id}`)).toEqual(entry);
    // Another tenant's deployment, named in acme's read, is not returned.
    expect(read.nodes.has(`Deployment:${foreign.id}`)).toBe(false);
    expect(read.nodes.size).toBe(3);
  });
});

describe("auditLogAppended", () => {
  it("is for ADMIN: a VIEWER is refused with FORBIDDEN", async () => {
    const s = await subscribe(AUDIT, await t.memberToken("acme", "VIEWER"));
    const m = await s.next();
    expect(m.payload.errors[0].extensions).toMatchObject({ code: "FORBIDDEN", requires: "ADMIN" });
  });

  it("delivers each entry after its change commits", async () => {
    const s = await subscribe(AUDIT, await t.memberToken("wayne", "ADMIN"));
    const [project] = await projectsOf("wayne");
    const id = await createDeployment("wayne", project!.id);
    const entry = (await s.nextData()).auditLogAppended;
    expect(entry).toMatchObject({ action: "deployment.create", targetType: "Deployment", actorLabel: "developer@wayne.test" });
    expect(Buffer.from(entry.targetId, "base64").toString()).toBe(Buffer.from(id, "base64").toString());
    // A failed mutation commits nothing and publishes nothing.
    const failed = await t.gql(`mutation { createDeployment(input: { projectId: "${Buffer.from("Project:00000000-0000-0000-0000-000000000001").toString("base64")}" }) { deployment { id } } }`, {
      token: await t.memberToken("wayne", "DEVELOPER"),
    });
    expect(failed.body.errors?.[0]?.extensions.code).toBe("NOT_FOUND");
    await t.gql(`mutation { createWorkflow(input: { name: "after-failure" }) { workflow { id } } }`, { token: await t.memberToken("wayne", "DEVELOPER") });
    expect((await s.nextData()).auditLogAppended.action).toBe("workflow.create");
    s.close();
  });
});

describe("authorization stays live", () => {
  it("a downgrade below ADMIN closes the stream with FORBIDDEN", async () => {
    // An ADMIN of its own: the seed's admin stays ADMIN for the other tests.
    const email = `demoted-${randomUUID()}@wayne.test`;
    const wayneId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "wayne" } })).id;
    await t.clients.platform.user.create({ data: { email, authSubject: email, memberships: { create: { tenantId: wayneId, role: "ADMIN" } } } });
    const s = await subscribe(AUDIT, await t.token(email, "wayne"));
    await s.next(200).catch(() => undefined); // nothing yet
    const r = await t.gql(`mutation($m: ID!) { updateMemberRole(input: { membershipId: $m, role: VIEWER }) { membership { role } } }`, {
      token: await t.memberToken("wayne", "OWNER"),
      variables: { m: await memberId("wayne", email) },
    });
    expect(r.body.errors).toBeUndefined();
    const err = await expectClosedWith(s, "FORBIDDEN");
    expect(err.extensions.requires).toBe("ADMIN");
    // The VIEWER's deployment stream is not affected by the downgrade.
    const v = await subscribe(DEPLOYMENTS, await t.token(email, "wayne"));
    const [project] = await projectsOf("wayne");
    const id = await createDeployment("wayne", project!.id);
    expect((await v.nextData()).deploymentUpdated.id).toBe(id);
    v.close();
  });

  it("a removed member's streams end with TENANT_ACCESS_DENIED", async () => {
    // A member of its own: the seed's developers stay for the other tests.
    const email = `leaving-${randomUUID()}@globex.test`;
    const globexId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "globex" } })).id;
    await t.clients.platform.user.create({
      data: { email, authSubject: email, memberships: { create: { tenantId: globexId, role: "DEVELOPER" } } },
    });
    const s = await subscribe(DEPLOYMENTS, await t.token(email, "globex"));
    const r = await t.gql(`mutation($m: ID!) { removeMember(input: { membershipId: $m }) { removedMembershipId } }`, {
      token: await t.memberToken("globex", "OWNER"),
      variables: { m: await memberId("globex", email) },
    });
    expect(r.body.errors).toBeUndefined();
    await expectClosedWith(s, "TENANT_ACCESS_DENIED");
  });

  it("a revoked key's streams end with UNAUTHENTICATED", async () => {
    const admin = await t.memberToken("wayne", "OWNER");
    const k = await t.gql(`mutation { createApiKey(input: { name: "live", role: ADMIN }) { apiKey { id } secret } }`, { token: admin });
    expect(k.body.errors).toBeUndefined();
    const s = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query: AUDIT }, { "x-api-key": k.body.data.createApiKey.secret });
    open.push(s);
    const r = await t.gql(`mutation($id: ID!) { revokeApiKey(input: { id: $id }) { apiKey { revokedAt } } }`, { token: admin, variables: { id: k.body.data.createApiKey.apiKey.id } });
    expect(r.body.errors).toBeUndefined();
    // The revocation's own audit entry may come first; then the stream ends.
    let m = await s.next();
    if (m.kind === "next" && !m.payload.errors) m = await s.next();
    expect(m.payload?.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });

  it("a key rotated without grace: the old secret's streams end with UNAUTHENTICATED, the new secret's go on", async () => {
    const owner = await t.memberToken("wayne", "OWNER");
    const key = await createKey(t.app, owner, "live rotate");
    const old = await keySubscribe(t.app, AUDIT, key.secret);
    const s1 = await rotateKey(t.app, owner, key.id, 0);
    // A request with the old secret is refused, and so is its open stream:
    // it ends before the rotation's own entry could reach it.
    expect((await t.gql(`{ tenant { slug } }`, { headers: { "x-api-key": key.secret } })).status).toBe(401);
    await expectClosedWith(old, "UNAUTHENTICATED");
    const fresh = await keySubscribe(t.app, AUDIT, s1);
    await createWorkflow(t.app, "wayne", "after-rotation");
    expect((await fresh.nextData()).auditLogAppended).toMatchObject({ action: "workflow.create", actorLabel: "developer@wayne.test" });
    fresh.close();
  });

  it("a second rotation ends the streams of the secret still in its grace", async () => {
    const owner = await t.memberToken("wayne", "OWNER");
    const key = await createKey(t.app, owner, "live rotate twice");
    const s1 = await rotateKey(t.app, owner, key.id, 60);
    // Inside its grace the old secret is served, its stream too.
    const inGrace = await keySubscribe(t.app, AUDIT, key.secret);
    const current = await keySubscribe(t.app, AUDIT, s1);
    await createWorkflow(t.app, "wayne", "in-grace");
    expect((await inGrace.nextData()).auditLogAppended.action).toBe("workflow.create");
    expect((await current.nextData()).auditLogAppended.action).toBe("workflow.create");
    await rotateKey(t.app, owner, key.id, 60);
    // The first secret is gone (the previous one is now the second's): its stream ends.
    await expectClosedWith(inGrace, "UNAUTHENTICATED");
    // The second secret, now in its own grace, is still served.
    expect((await current.nextData()).auditLogAppended.action).toBe("apiKey.rotate");
    current.close();
  });

  it("a key's streams end with FEATURE_NOT_AVAILABLE when the tenant loses api_access", async () => {
    const admin = await t.memberToken("wayne", "OWNER");
    const k = await t.gql(`mutation { createApiKey(input: { name: "live features", role: ADMIN }) { apiKey { id } secret } }`, { token: admin });
    expect(k.body.errors).toBeUndefined();
    const s = await sseSubscribe((url, init) => t.app.fetch(url, init), "http://localhost/graphql", { query: DEPLOYMENTS }, { "x-api-key": k.body.data.createApiKey.secret });
    open.push(s);
    const tenantId = Buffer.from(`Tenant:${ids.wayne}`).toString("base64");
    const platformAdmin = await t.adminToken();
    const set = (features: string[] | null) =>
      t.gql(`mutation($input: SetTenantFeaturesInput!) { setTenantFeatures(input: $input) { tenant { features } } }`, {
        token: platformAdmin,
        variables: { input: { tenantId, features } },
      });
    expect((await set(["sso"])).body.errors).toBeUndefined();
    const error = await expectClosedWith(s, "FEATURE_NOT_AVAILABLE");
    expect(error.extensions).toMatchObject({ feature: "api_access", plan: "ENTERPRISE" });
    expect((await set(null)).body.errors).toBeUndefined();
  });

  it("a suspended tenant's streams end with TENANT_SUSPENDED", async () => {
    const s = await subscribe(DEPLOYMENTS, await t.memberToken("acme", "VIEWER"));
    const r = await t.gql(`mutation($id: ID!) { suspendTenant(input: { tenantId: $id, reason: "live test" }) { tenant { status } } }`, {
      token: await t.adminToken(),
      variables: { id: Buffer.from(`Tenant:${ids.acme}`).toString("base64") },
    });
    expect(r.body.errors).toBeUndefined();
    await expectClosedWith(s, "TENANT_SUSPENDED");
    await t.gql(`mutation($id: ID!) { reactivateTenant(input: { tenantId: $id }) { tenant { status } } }`, {
      token: await t.adminToken(),
      variables: { id: Buffer.from(`Tenant:${ids.acme}`).toString("base64") },
    });
  });
});

describe("limits", () => {
  it("SUBSCRIPTIONS caps concurrent streams per tenant (QUOTA_EXCEEDED), overridable, counted in usage", async () => {
    const tenantId = Buffer.from(`Tenant:${ids.wayne}`).toString("base64");
    const set = await t.gql(`mutation($id: ID!) { setTenantLimits(input: { tenantId: $id, limits: [{ resource: SUBSCRIPTIONS, limit: 2 }] }) { tenant { id } } }`, {
      token: await t.adminToken(),
      variables: { id: tenantId },
    });
    expect(set.body.errors).toBeUndefined();
    const token = await t.memberToken("wayne", "VIEWER");
    const used = () => subscriptionsUsed("wayne");
    // The earlier tests' wayne streams have given their slots back (a slot
    // is released after the stream has ended, asynchronously): otherwise b
    // could be refused now and c served once that release lands.
    await expect.poll(used, { timeout: 10_000 }).toBe(0);
    const a = await subscribe(DEPLOYMENTS, token);
    const b = await subscribe(DEPLOYMENTS, token);
    const usage = await t.gql(`{ usage { quotas { resource limit used } } }`, { token: await t.memberToken("wayne", "OWNER") });
    expect(usage.body.data.usage.quotas.find((q: any) => q.resource === "SUBSCRIPTIONS")).toEqual({ resource: "SUBSCRIPTIONS", limit: 2, used: 2 });
    const c = await subscribe(DEPLOYMENTS, token);
    const m = await c.next();
    expect(m.payload.errors[0].extensions).toMatchObject({ code: "QUOTA_EXCEEDED", resource: "SUBSCRIPTIONS", limit: 2, used: 2, requested: 1 });
    a.close();
    // The slot is free once the stream has ended.
    await expect.poll(used, { timeout: 10_000 }).toBe(1);
    // The freed slot is taken again: d is counted with b, and served.
    const d = await subscribe(DEPLOYMENTS, token);
    await expect.poll(used, { timeout: 10_000 }).toBe(2);
    const [project] = await projectsOf("wayne");
    const id = await createDeployment("wayne", project!.id);
    expect((await d.nextData()).deploymentUpdated.id).toBe(id);
    b.close();
    d.close();
    await t.gql(`mutation($id: ID!) { setTenantLimits(input: { tenantId: $id, limits: [{ resource: SUBSCRIPTIONS, limit: 1000 }] }) { tenant { id } } }`, {
      token: await t.adminToken(),
      variables: { id: tenantId },
    });
  });
});

describe("a hub of its own", () => {
  it("a consumer that does not read is disconnected (SLOW_CONSUMER), and shutdown ends streams with a reconnect hint", async () => {
    const live = new LiveHub({ platform: t.clients.platform, events: t.clients.live, logger: createLogger("silent"), bufferSize: 2, abortAfterMs: 500 });
    const app = createApp(testAppDeps(t.clients, t.store, { live }));
    const token = await t.memberToken("wayne", "VIEWER");
    const fetchApp = (url: string, init: RequestInit) => app.fetch(url, init);
    const [project] = await projectsOf("wayne");
    // This consumer never reads its response body.
    const slow = await app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { accept: "text/event-stream", "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: DEPLOYMENTS }),
    });
    expect(slow.status).toBe(200);
    const steady = await sseSubscribe(fetchApp, "http://localhost/graphql", { query: DEPLOYMENTS }, { authorization: `Bearer ${token}` });
    open.push(steady);
    expect(live.size).toBe(2);
    const dev = await t.memberToken("wayne", "DEVELOPER");
    for (let i = 0; i < 6; i++) {
      const r = await app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${dev}` },
        body: JSON.stringify({ query: `mutation($p: ID!) { createDeployment(input: { projectId: $p }) { deployment { id } } }`, variables: { p: project!.id } }),
      });
      expect(res(await r.json())).toBeUndefined();
      await steady.nextData();
    }
    // The slow stream was dropped; the steady one goes on.
    await expect.poll(() => live.size, { timeout: 10_000 }).toBe(1);
    await live.close();
    const last = await steady.next();
    expect(last.payload.errors[0].extensions).toMatchObject({ code: "SERVICE_UNAVAILABLE", reconnect: true });
    expect((await steady.next()).kind).toBe("complete");
    await slow.body?.cancel().catch(() => {});
  });
});

describe("a hub of its own, handing a large fan-out out in chunks", () => {
  it("a tenant's streams get an event in chunks with the event loop's turn between two, every stream its node", async () => {
    let pauses = 0;
    const live = new LiveHub({
      platform: t.clients.platform,
      events: t.clients.live,
      logger: createLogger("silent"),
      fanOutChunk: 2,
      pause: () => new Promise<void>((resolve) => setImmediate(() => (pauses++, resolve()))),
    });
    const app = createApp(testAppDeps(t.clients, t.store, { live }));
    const fetchApp = (url: string, init: RequestInit) => app.fetch(url, init);
    const streams: LiveSubscription[] = [];
    try {
      const token = await t.memberToken("wayne", "VIEWER");
      for (let i = 0; i < 5; i++) streams.push(await sseSubscribe(fetchApp, "http://localhost/graphql", { query: DEPLOYMENTS }, { authorization: `Bearer ${token}` }));
      expect(live.size).toBe(5);
      const [project] = await projectsOf("wayne");
      const made = await call(app, `mutation($p: ID!) { createDeployment(input: { projectId: $p }) { deployment { id } } }`, { authorization: `Bearer ${await t.memberToken("wayne", "DEVELOPER")}` }, { p: project!.id });
      for (const s of streams) expect((await s.nextData()).deploymentUpdated.id).toBe(made.createDeployment.deployment.id);
      // 5 streams in chunks of 2: a turn after the 2nd and after the 4th.
      expect(pauses).toBe(2);
    } finally {
      for (const s of streams) s.close();
      await live.close();
    }
  });
});

describe("a hub on a manual clock", () => {
  /** An app whose clock, and its hub's, the test moves (nothing waits for real time). */
  function onManualClock() {
    const clock = new ManualClock();
    const live = new LiveHub({ platform: t.clients.platform, events: t.clients.live, logger: createLogger("silent"), now: clock.now, wakeAt: clock.wakeAt });
    const app = createApp(testAppDeps(t.clients, t.store, { live, clock: clock.now }));
    return { clock, live, app };
  }

  it("a stream opened with the old secret inside its grace ends when the grace ends; the new secret's goes on", async () => {
    const { clock, live, app } = onManualClock();
    try {
      const owner = await t.memberToken("wayne", "OWNER");
      const key = await createKey(app, owner, "live grace");
      const s1 = await rotateKey(app, owner, key.id, 5);
      const old = await keySubscribe(app, AUDIT, key.secret);
      const fresh = await keySubscribe(app, AUDIT, s1);
      // A second before the grace ends, the old secret's stream is served.
      clock.advance(5 * 60_000 - 1_000);
      await createWorkflow(app, "wayne", "before-grace-end");
      expect((await old.nextData()).auditLogAppended.action).toBe("workflow.create");
      expect((await fresh.nextData()).auditLogAppended.action).toBe("workflow.create");
      // The grace ends: the old secret's stream ends by itself (no event, no access change).
      clock.advance(1_001);
      await expectClosedWith(old, "UNAUTHENTICATED");
      await createWorkflow(app, "wayne", "after-grace-end");
      expect((await fresh.nextData()).auditLogAppended.action).toBe("workflow.create");
      fresh.close();
    } finally {
      await live.close();
    }
  });

  it("a token's streams end at the token's expiry", async () => {
    const { clock, live, app } = onManualClock();
    try {
      const token = await t.token("viewer@acme.test", "acme", "10m");
      // The token's end in whole seconds of the wall clock it was signed by: the manual clock
      // moves to it exactly (10 minutes from the clock's start could fall short of it by up to a second).
      const end = decodeJwt(token).exp! * 1000;
      const s = await sseSubscribe((url, init) => app.fetch(url, init), "http://localhost/graphql", { query: DEPLOYMENTS }, { authorization: `Bearer ${token}` });
      open.push(s);
      expect(s.status).toBe(200);
      clock.advance(end - 60_000 - clock.now());
      const [project] = await projectsOf("acme");
      const made = await call(app, `mutation($p: ID!) { createDeployment(input: { projectId: $p }) { deployment { id } } }`, { authorization: `Bearer ${await t.memberToken("acme", "DEVELOPER")}` }, { p: project!.id });
      // Still open a minute before the token's end.
      expect((await s.nextData()).deploymentUpdated.id).toBe(made.createDeployment.deployment.id);
      clock.advance(60_000);
      await expectClosedWith(s, "UNAUTHENTICATED");
    } finally {
      await live.close();
    }
  });
});

describe("a hub of its own, counting its access reads", () => {
  it("the periodic re-check reads one tenant at a time (the platform pool is every tier's authentication)", async () => {
    const reads = { now: 0, max: 0, total: 0 };
    const platform = new Proxy(t.clients.platform, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== "$queryRaw" || typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          reads.now++;
          reads.total++;
          reads.max = Math.max(reads.max, reads.now);
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } finally {
            reads.now--;
          }
        };
      },
    });
    const live = new LiveHub({ platform, events: t.clients.live, logger: createLogger("silent") });
    const app = createApp(testAppDeps(t.clients, t.store, { live }));
    const fetchApp = (url: string, init: RequestInit) => app.fetch(url, init);
    const streams: LiveSubscription[] = [];
    try {
      for (const slug of ["acme", "globex", "wayne"]) {
        streams.push(await sseSubscribe(fetchApp, "http://localhost/graphql", { query: DEPLOYMENTS }, { authorization: `Bearer ${await t.memberToken(slug, "VIEWER")}` }));
      }
      expect(live.size).toBe(3);
      reads.max = reads.total = 0;
      live.recheckAll();
      live.recheckAll(); // asked again during the sweep: one more sweep after it, still one at a time
      await expect.poll(() => reads.total, { timeout: 10_000 }).toBe(6);
      expect(reads.max).toBe(1);
    } finally {
      for (const s of streams) s.close();
      await live.close();
    }
  });
});

const res = (body: any) => body.errors;
