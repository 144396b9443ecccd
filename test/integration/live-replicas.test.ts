import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Databases } from "../../src/db/clients.ts";
import type { Role } from "../../src/generated/prisma/enums.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { createTestClients, createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { sseSubscribe, wsClient, wsSubscribe, type LiveSubscription } from "../helpers/live-client.ts";
import { startServer, type ServerProcess } from "../helpers/server-process.ts";
import { testRedisEnv, testRedisTarget } from "../helpers/redis-cluster.ts";

/**
 * Live updates across two real server processes sharing one PostgreSQL and
 * one Redis (SPEC section 10): a change committed through A reaches
 * subscribers on B (over WebSocket and SSE), never another tenant's
 * subscribers, and a revocation made through A closes streams held by B.
 * The tenants and users are made fresh (random slugs and subjects) so the
 * servers' directory keys never meet another test file's on the shared
 * Redis. Without REDIS_URL there is no cross-process pub/sub to test.
 */

const JWT_SECRET = "live-replicas-secret-0123456789abcdef01234";
const DEPLOYMENTS = `subscription { deploymentUpdated { id status project { name } } }`;
const AUDIT = `subscription { auditLogAppended { action targetType } }`;

interface Fixture {
  id: string;
  slug: string;
  projectId: string;
  members: Record<string, { subject: string; membershipId: string }>;
}

describe.runIf(testRedisTarget())("live updates across two processes", () => {
  let db: TestDatabase;
  let clients: Databases;
  let A: ServerProcess;
  let B: ServerProcess;
  const tenants: Record<"x" | "y", Fixture> = {} as never;
  const suffix = randomBytes(4).toString("hex");
  const opsSubject = `ops-${suffix}@live.test`;
  const open: LiveSubscription[] = [];
  const sockets: { dispose(): void | Promise<void> }[] = [];

  let env: Record<string, string>;
  let made = 0;

  beforeAll(async () => {
    db = await createTestDatabase();
    env = {
      DATABASE_URL: db.url,
      ...testRedisEnv(),
      MIGRATE_ON_START: "true",
      SEED_ON_START: "false",
      JWT_SECRET,
      LOG_LEVEL: "silent",
      PLATFORM_ADMIN_SUBJECTS: opsSubject,
    };
    [A, B] = await Promise.all([startServer(env), startServer(env)]);
    clients = createTestClients(db.url, 2);
    const p = clients.platform;
    await p.user.upsert({ where: { authSubject: opsSubject }, update: {}, create: { email: opsSubject, authSubject: opsSubject, isPlatformAdmin: true } });
  }, 180_000);

  // Every test gets tenants x and y of its own (removals, downgrades and suspensions
  // stay in the test that made them), and a running B (the shutdown test stops it).
  beforeEach(async () => {
    if (B.child.exitCode !== null || B.child.signalCode !== null) B = await startServer(env);
    const p = clients.platform;
    made++;
    for (const key of ["x", "y"] as const) {
      const slug = `live-${key}-${made}-${suffix}`;
      const tenant = await p.tenant.create({ data: { name: slug, slug, plan: "PRO" } });
      const project = await p.project.create({ data: { tenantId: tenant.id, name: `${key}-project`, slug: "p" } });
      const members: Fixture["members"] = {};
      for (const role of ["OWNER", "ADMIN", "DEVELOPER", "VIEWER"] as Role[]) {
        const subject = `${role.toLowerCase()}-${slug}@live.test`;
        const user = await p.user.create({ data: { email: subject, authSubject: subject } });
        const m = await p.membership.create({ data: { tenantId: tenant.id, userId: user.id, role } });
        members[role] = { subject, membershipId: m.id };
      }
      tenants[key] = { id: tenant.id, slug, projectId: Buffer.from(`Project:${project.id}`).toString("base64"), members };
    }
  }, 60_000);

  afterAll(async () => {
    for (const s of open) s.close();
    await Promise.allSettled(sockets.map((s) => s.dispose()));
    await Promise.allSettled([A?.stop(), B?.stop()]);
    await clients?.close();
    await db?.drop();
  });

  const token = (subject: string, tenant?: Fixture) => signDevToken({ secret: JWT_SECRET, sub: subject, tenant: tenant?.id, ttl: "10m" });
  const wsUrl = (s: ServerProcess) => s.url.replace("http", "ws") + "/graphql";

  async function gql(server: ServerProcess, query: string, bearer: string, variables?: Record<string, unknown>) {
    const res = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = await res.json();
    expect(body.errors).toBeUndefined();
    return body.data;
  }

  async function deploy(server: ServerProcess, t: Fixture, role: Role = "DEVELOPER"): Promise<string> {
    const data = await gql(server, `mutation($p: ID!) { createDeployment(input: { projectId: $p }) { deployment { id } } }`, await token(t.members[role]!.subject, t), { p: t.projectId });
    return data.createDeployment.deployment.id;
  }

  async function ws(server: ServerProcess, role: Role, t: Fixture, query: string) {
    const { client } = wsClient(wsUrl(server), { authorization: `Bearer ${await token(t.members[role]!.subject)}`, "x-tenant-id": t.slug });
    sockets.push(client);
    const s = wsSubscribe(client, { query });
    open.push(s);
    return s;
  }

  async function sse(server: ServerProcess, role: Role, t: Fixture, query: string) {
    const s = await sseSubscribe(fetch, `${server.url}/graphql`, { query }, { authorization: `Bearer ${await token(t.members[role]!.subject, t)}` });
    open.push(s);
    return s;
  }

  async function expectClosedWith(s: LiveSubscription, code: string) {
    let m = await s.next();
    // An event committed just before the revocation may still arrive first.
    while (m.kind === "next" && !m.payload.errors) m = await s.next();
    expect([m.kind, m.payload?.errors?.[0]?.extensions?.code]).toEqual(["next", code]);
    expect((await s.next()).kind).toBe("complete");
    return m.payload.errors[0];
  }

  it("a change committed through A reaches B's subscribers of that tenant only, over WebSocket and SSE", async () => {
    const x = tenants.x;
    const y = tenants.y;
    const xOnB = await ws(B, "VIEWER", x, DEPLOYMENTS);
    const yOnB = await sse(B, "VIEWER", y, DEPLOYMENTS);
    const yOnA = await ws(A, "VIEWER", y, DEPLOYMENTS);
    // graphql-ws subscribes once connected: the first event proves the stream is open.
    await expect.poll(async () => {
      const id = await deploy(A, x);
      return xOnB.seen.length > 0 ? id : null;
    }, { timeout: 15_000, interval: 500 }).not.toBeNull();
    const first = xOnB.seen[0]!;
    expect(first.payload.data.deploymentUpdated).toMatchObject({ status: "QUEUED", project: { name: "x-project" } });
    const yId = await deploy(A, y);
    // y's subscribers see y's deployment as their first event: nothing of x reached them.
    expect((await yOnB.nextData()).deploymentUpdated).toMatchObject({ id: yId, project: { name: "y-project" } });
    expect((await yOnA.nextData()).deploymentUpdated.id).toBe(yId);
    // A's own subscriber had it from A directly; the copy Redis sends back to
    // A is dropped, so its next event is the next change, not that one again.
    const yId2 = await deploy(A, y);
    expect((await yOnA.nextData()).deploymentUpdated.id).toBe(yId2);
    expect((await yOnB.nextData()).deploymentUpdated.id).toBe(yId2);
    expect(yOnB.seen).toHaveLength(2);
    const xSeen = xOnB.seen.filter((m) => m.kind === "next").map((m) => m.payload.data.deploymentUpdated.id);
    expect(xSeen).not.toContain(yId);
  });

  it("refuses a WebSocket whose connection_init carries bad credentials, with the code", async () => {
    const { client, closed } = wsClient(wsUrl(B), { authorization: "Bearer not-a-token", "x-tenant-id": tenants.x.slug });
    sockets.push(client);
    const s = wsSubscribe(client, { query: DEPLOYMENTS });
    const { code, reason } = await closed;
    expect([code, reason.split(":")[0]]).toEqual([4403, "UNAUTHENTICATED"]);
    s.close();
  });

  it("a removal or downgrade made through A closes B's streams with the code", async () => {
    const x = tenants.x;
    const owner = await token(x.members.OWNER!.subject, x);
    const removed = await sse(B, "DEVELOPER", x, DEPLOYMENTS);
    const downgraded = await sse(B, "ADMIN", x, AUDIT);
    expect([removed.status, downgraded.status]).toEqual([200, 200]);
    await gql(A, `mutation($m: ID!) { removeMember(input: { membershipId: $m }) { removedMembershipId } }`, owner, {
      m: Buffer.from(`Membership:${x.members.DEVELOPER!.membershipId}`).toString("base64"),
    });
    await expectClosedWith(removed, "TENANT_ACCESS_DENIED");
    await gql(A, `mutation($m: ID!) { updateMemberRole(input: { membershipId: $m, role: DEVELOPER }) { membership { role } } }`, owner, {
      m: Buffer.from(`Membership:${x.members.ADMIN!.membershipId}`).toString("base64"),
    });
    const err = await expectClosedWith(downgraded, "FORBIDDEN");
    expect(err.extensions.requires).toBe("ADMIN");
  });

  it("a key rotated through A without grace closes B's streams of the old secret; the new secret's go on", async () => {
    const x = tenants.x;
    const owner = await token(x.members.OWNER!.subject, x);
    const made = await gql(A, `mutation { createApiKey(input: { name: "replicas", role: ADMIN }) { apiKey { id } secret } }`, owner);
    const keySse = async (secret: string) => {
      const s = await sseSubscribe(fetch, `${B.url}/graphql`, { query: AUDIT }, { "x-api-key": secret });
      open.push(s);
      expect(s.status).toBe(200);
      return s;
    };
    const old = await keySse(made.createApiKey.secret);
    const rotated = await gql(A, `mutation($i: RotateApiKeyInput!) { rotateApiKey(input: $i) { secret } }`, owner, {
      i: { id: made.createApiKey.apiKey.id, gracePeriodMinutes: 0 },
    });
    // B judges the secret the stream was opened with: PostgreSQL refuses it now.
    const first = await old.next();
    expect([first.kind, first.payload?.errors?.[0]?.extensions?.code]).toEqual(["next", "UNAUTHENTICATED"]);
    expect((await old.next()).kind).toBe("complete");
    const fresh = await keySse(rotated.rotateApiKey.secret);
    await deploy(A, x);
    expect((await fresh.nextData()).auditLogAppended).toEqual({ action: "deployment.create", targetType: "Deployment" });
  });

  it("suspending a tenant through A closes its streams on B (WebSocket) with TENANT_SUSPENDED", async () => {
    const y = tenants.y;
    const s = await ws(B, "OWNER", y, AUDIT);
    // The subscription is live once an entry arrives.
    await expect.poll(async () => {
      await deploy(A, y);
      return s.seen.length;
    }, { timeout: 15_000, interval: 500 }).toBeGreaterThan(0);
    await gql(A, `mutation($id: ID!) { suspendTenant(input: { tenantId: $id, reason: "test" }) { tenant { status } } }`, await token(opsSubject), {
      id: Buffer.from(`Tenant:${y.id}`).toString("base64"),
    });
    await expectClosedWith(s, "TENANT_SUSPENDED");
  });

  it("shutdown ends open streams with SERVICE_UNAVAILABLE and a reconnect hint", async () => {
    const x = tenants.x;
    const s = await sse(B, "VIEWER", x, DEPLOYMENTS);
    const w = await ws(B, "OWNER", x, DEPLOYMENTS);
    // Its OWNER deploys.
    await expect.poll(async () => {
      await deploy(A, x, "OWNER");
      return s.seen.length > 0 && w.seen.length > 0;
    }, { timeout: 15_000, interval: 500 }).toBe(true);
    // Both streams idle: the last deployment reached both.
    const last = await deploy(A, x, "OWNER");
    for (const sub of [s, w]) {
      await expect.poll(() => sub.seen.some((m) => m.payload?.data?.deploymentUpdated?.id === last), { timeout: 15_000 }).toBe(true);
    }
    const exited = new Promise<number | null>((resolve) => B.child.once("exit", (code) => resolve(code)));
    B.child.kill("SIGTERM");
    for (const sub of [s, w]) {
      let m = await sub.next();
      while (m.kind === "next" && !m.payload.errors) m = await sub.next();
      expect(m.payload?.errors?.[0]?.extensions, JSON.stringify(sub.seen)).toMatchObject({ code: "SERVICE_UNAVAILABLE", reconnect: true });
    }
    // (Its exit code is the shutdown sequence's business: 143 on main before this change too.)
    await exited;
  });
});
