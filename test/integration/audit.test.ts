import { randomUUID } from "node:crypto";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import type { TrustProxy } from "../../src/config/trust-proxy.ts";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { ownerClient } from "../helpers/db.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * @audit: the entry is written in the same transaction as the change (an
 * audit insert that fails takes the change with it), carries who, what,
 * request id, IP and the redacted input, and is append-only for the app.
 */

const gid = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString("base64");

describe("audit", () => {
  let t: TestApp;
  const store = isolatedStore();
  let acmeId: string;

  beforeAll(async () => {
    t = await createTestApp({ store });
    acmeId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
  });
  afterAll(async () => {
    await t?.close();
    await store.close();
  });

  it("a failing audit insert rolls the change back (both or neither)", async () => {
    const owner = ownerClient(t.db.url);
    const admin = await t.memberToken("acme", "ADMIN");
    const ownerToken = await t.memberToken("acme", "OWNER");
    const viewerM = await t.clients.platform.membership.findFirstOrThrow({ where: { tenantId: acmeId, role: "VIEWER" } });
    await owner.$executeRawUnsafe(
      `ALTER TABLE audit_log ADD CONSTRAINT test_refuse_audit CHECK (action NOT IN ('project.create', 'member.invite', 'member.updateRole', 'member.remove', 'apiKey.create')) NOT VALID`,
    );
    try {
      const project = await t.gql(`mutation { createProject(input: { name: "Unaudited" }) { project { id } } }`, { token: admin });
      expect(project.body.errors?.[0].extensions.code).toBe("INTERNAL_SERVER_ERROR");
      expect(await t.clients.platform.project.count({ where: { name: "Unaudited" } })).toBe(0);

      const invite = await t.gql(`mutation { inviteMember(input: { email: "ghost@example.test", role: VIEWER }) { membership { id } } }`, { token: admin });
      expect(invite.body.errors?.[0].extensions.code).toBe("INTERNAL_SERVER_ERROR");
      expect(await t.clients.platform.user.count({ where: { email: "ghost@example.test" } })).toBe(0);

      const role = await t.gql(`mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { membership { role } } }`, {
        token: admin,
        variables: { i: { membershipId: gid("Membership", viewerM.id), role: "ADMIN" } },
      });
      expect(role.body.errors?.[0].extensions.code).toBe("INTERNAL_SERVER_ERROR");
      const remove = await t.gql(`mutation($i: RemoveMemberInput!) { removeMember(input: $i) { removedMembershipId } }`, {
        token: ownerToken,
        variables: { i: { membershipId: gid("Membership", viewerM.id) } },
      });
      expect(remove.body.errors?.[0].extensions.code).toBe("INTERNAL_SERVER_ERROR");
      expect((await t.clients.platform.membership.findFirstOrThrow({ where: { id: viewerM.id } })).role).toBe("VIEWER");

      const key = await t.gql(`mutation { createApiKey(input: { name: "unaudited", role: VIEWER }) { secret } }`, { token: admin });
      expect(key.body.errors?.[0].extensions.code).toBe("INTERNAL_SERVER_ERROR");
      expect(key.body.data ?? null).toBeNull();
      expect(await t.clients.platform.apiKey.count({ where: { name: "unaudited" } })).toBe(0);
    } finally {
      await owner.$executeRawUnsafe(`ALTER TABLE audit_log DROP CONSTRAINT test_refuse_audit`);
      await owner.$disconnect();
    }
    // With the audit log writable again, the same change goes through with its entry.
    const again = await t.gql(`mutation { createProject(input: { name: "Unaudited" }) { project { id } } }`, { token: admin });
    expect(again.body.errors).toBeUndefined();
    expect(await t.clients.platform.auditLogEntry.count({ where: { targetId: again.body.data.createProject.project.id } })).toBe(1);
  });

  it("an entry names action, actor, target, request id, IP and the input (no socket here: IP unknown, X-Forwarded-For not believed)", async () => {
    const token = await t.memberToken("acme", "DEVELOPER");
    const requestId = `audit-${randomUUID()}`;
    const res = await t.gql(`mutation { createProject(input: { name: "Audited", description: "why" }) { project { id } } }`, {
      token,
      headers: { "x-request-id": requestId, "x-forwarded-for": "203.0.113.7, 10.0.0.1" },
    });
    expect(res.body.errors).toBeUndefined();
    const user = await t.clients.platform.user.findUniqueOrThrow({ where: { email: "developer@acme.test" } });
    const entry = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { requestId } });
    expect(entry).toMatchObject({
      tenantId: acmeId,
      action: "project.create",
      actorType: "USER",
      actorId: gid("User", user.id),
      actorLabel: "developer@acme.test",
      targetType: "Project",
      targetId: res.body.data.createProject.project.id,
      crossTenant: false,
      ip: null,
      metadata: { input: { name: "Audited", description: "why" } },
    });
  });

  // Redaction itself (any depth, any secret-like key) is unit-tested in test/unit/directives.test.ts.
  it("secrets in the input never reach the audit log", async () => {
    const token = await t.memberToken("acme", "DEVELOPER");
    const requestId = `audit-${randomUUID()}`;
    const res = await t.gql(
      `mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { workflow { id } } }`,
      { token, headers: { "x-request-id": requestId }, variables: { i: { name: "Deploy", config: { deployToken: "tok-123", password: "hunter2", steps: ["a"] } } } },
    );
    expect(res.body.errors).toBeUndefined();
    const entry = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { requestId } });
    const text = JSON.stringify(entry.metadata);
    expect(text).not.toContain("tok-123");
    expect(text).not.toContain("hunter2");
  });

  describe("the client address (TRUST_PROXY)", () => {
    const servers: Server[] = [];
    afterAll(async () => {
      for (const server of servers) {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });

    /** A real server (the audit IP comes from the socket) over the same databases, with `trustProxy`. */
    async function serve(trustProxy?: TrustProxy): Promise<number> {
      const server = createServer(createApp(testAppDeps(t.clients, store, { config: { trustProxy } })));
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      return (server.address() as AddressInfo).port;
    }

    /** Runs an audited mutation through `port` with X-Forwarded-For; the entry's recorded ip. */
    async function recordedIp(port: number, forwardedFor: string): Promise<string | null> {
      const requestId = `xff-${randomUUID()}`;
      const body = JSON.stringify({ query: `mutation { createProject(input: { name: "${requestId}" }) { project { id } } }` });
      const token = await t.memberToken("acme", "DEVELOPER");
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          {
            host: "127.0.0.1",
            port,
            path: "/graphql",
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "x-request-id": requestId, "x-forwarded-for": forwardedFor },
          },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode!));
          },
        );
        req.on("error", reject);
        req.end(body);
      });
      expect(status).toBe(200);
      return (await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { requestId } })).ip;
    }

    const hostile = "<script>alert(1)</script>";

    it("by default the socket address is recorded, whatever X-Forwarded-For claims", async () => {
      const port = await serve();
      expect(await recordedIp(port, hostile)).toBe("127.0.0.1");
      expect(await recordedIp(port, "203.0.113.7")).toBe("127.0.0.1");
    });

    it("from a trusted proxy (address list) the hop it names is recorded; free text never is", async () => {
      const port = await serve({ kind: "addresses", ranges: [{ address: "127.0.0.0", prefix: 8, family: "ipv4" }] });
      expect(await recordedIp(port, `${hostile}, 203.0.113.7`)).toBe("203.0.113.7");
      expect(await recordedIp(port, hostile)).toBe("127.0.0.1");
    });

    it("a proxy not on the list is not believed", async () => {
      const port = await serve({ kind: "addresses", ranges: [{ address: "10.0.0.0", prefix: 8, family: "ipv4" }] });
      expect(await recordedIp(port, "203.0.113.7")).toBe("127.0.0.1");
    });

    it("a hop count believes exactly that many proxies", async () => {
      const one = await serve({ kind: "hops", hops: 1 });
      expect(await recordedIp(one, "198.51.100.9, 203.0.113.7")).toBe("203.0.113.7");
      const two = await serve({ kind: "hops", hops: 2 });
      expect(await recordedIp(two, "198.51.100.9, 203.0.113.7")).toBe("198.51.100.9");
    });
  });

  describe("effective arguments, inline or as variables", () => {
    const tenantGid = async (slug: string) => gid("Tenant", (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } })).id);

    it("a tenant mutation with inline arguments records them, secrets redacted", async () => {
      const requestId = `inline-${randomUUID()}`;
      const res = await t.gql(
        `mutation { createWorkflow(input: { name: "Inline hook", config: { url: "https://hooks.example", webhookSecret: "whsec_inline_1", headers: { apiKey: "k-inline-2" } } }) { workflow { id } } }`,
        { token: await t.memberToken("acme", "DEVELOPER"), headers: { "x-request-id": requestId } },
      );
      expect(res.body.errors).toBeUndefined();
      const entry = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { requestId } });
      expect(entry.metadata).toMatchObject({
        input: { name: "Inline hook", config: { url: "https://hooks.example", webhookSecret: "[redacted]", headers: { apiKey: "[redacted]" } } },
      });
      expect(JSON.stringify(entry.metadata)).not.toMatch(/whsec_inline_1|k-inline-2/);
    });

    it("platform mutations with inline arguments record them (reason, limits), in the platform log and the tenant's", async () => {
      const token = await t.adminToken();
      const tenantId = await tenantGid("globex");
      const suspendId = `suspend-${randomUUID()}`;
      const suspend = await t.gql(`mutation { suspendTenant(input: { tenantId: "${tenantId}", reason: "chargeback dispute 4411" }) { tenant { status } } }`, {
        token,
        headers: { "x-request-id": suspendId },
      });
      expect(suspend.body.errors).toBeUndefined();
      const platformEntry = await t.clients.platform.platformAuditEntry.findFirstOrThrow({ where: { requestId: suspendId } });
      expect(platformEntry.metadata).toMatchObject({
        field: "Mutation.suspendTenant",
        args: { input: { tenantId, reason: "chargeback dispute 4411" } },
        variables: {},
      });
      const tenantEntry = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { requestId: suspendId } });
      expect(tenantEntry.metadata).toMatchObject({ args: { input: { reason: "chargeback dispute 4411" } } });

      const reactivate = await t.gql(`mutation { reactivateTenant(input: { tenantId: "${tenantId}" }) { tenant { status } } }`, { token });
      expect(reactivate.body.data.reactivateTenant.tenant.status).toBe("ACTIVE");

      const limitsId = `limits-${randomUUID()}`;
      const limits = await t.gql(
        `mutation { setTenantLimits(input: { tenantId: "${tenantId}", limits: [{ resource: PROJECTS, limit: 7 }] }) { tenant { id } } }`,
        { token, headers: { "x-request-id": limitsId } },
      );
      expect(limits.body.errors).toBeUndefined();
      const limitsEntry = await t.clients.platform.platformAuditEntry.findFirstOrThrow({ where: { requestId: limitsId } });
      expect(limitsEntry.metadata).toMatchObject({ args: { input: { limits: [{ resource: "PROJECTS", limit: 7 }] } } });
    });

    it("the same platform mutation through variables records the same arguments", async () => {
      const token = await t.adminToken();
      const tenantId = await tenantGid("wayne");
      const requestId = `plan-${randomUUID()}`;
      const res = await t.gql(`mutation($i: ChangeTenantPlanInput!) { changeTenantPlan(input: $i) { tenant { plan } } }`, {
        token,
        headers: { "x-request-id": requestId },
        variables: { i: { tenantId, plan: "PRO" } },
      });
      expect(res.body.errors).toBeUndefined();
      const entry = await t.clients.platform.platformAuditEntry.findFirstOrThrow({ where: { requestId } });
      expect(entry.metadata).toMatchObject({ args: { input: { tenantId, plan: "PRO" } }, variables: { i: { tenantId, plan: "PRO" } } });
    });

    it("a platform read with inline arguments records them", async () => {
      const requestId = `read-${randomUUID()}`;
      const res = await t.gql(`{ platform { tenants(first: 1, filter: { search: "glob" }) { totalCount } } }`, {
        token: await t.adminToken(),
        headers: { "x-request-id": requestId },
      });
      expect(res.body.errors).toBeUndefined();
      const entry = await t.clients.platform.platformAuditEntry.findFirstOrThrow({ where: { requestId } });
      expect(entry.metadata).toMatchObject({ field: "Platform.tenants", args: { first: 1, filter: { search: "glob" } }, variables: {} });
    });
  });

  it("the app role cannot change or delete entries", async () => {
    const db = new TenantDb(t.clients.app, { tenantId: acmeId, statementTimeoutMs: 0, mode: "statement" });
    const before = await t.clients.platform.auditLogEntry.count({ where: { tenantId: acmeId } });
    expect(before).toBeGreaterThan(0);
    await expect(db.queryRaw(Prisma.sql`UPDATE audit_log SET action = 'x.y' WHERE tenant_id = ${acmeId}::uuid`)).rejects.toThrow(/permission denied|42501/);
    await expect(db.queryRaw(Prisma.sql`DELETE FROM audit_log WHERE tenant_id = ${acmeId}::uuid`)).rejects.toThrow(/permission denied|42501/);
    await expect(db.transaction((tx) => tx.auditLogEntry.deleteMany({}))).rejects.toThrow();
    expect(await t.clients.platform.auditLogEntry.count({ where: { tenantId: acmeId } })).toBe(before);
  });

  it("tenant admins read their audit log; developers do not", async () => {
    const admin = await t.gql(`{ auditLog(first: 5) { edges { node { action actorLabel } } } }`, { token: await t.memberToken("acme", "ADMIN") });
    expect(admin.body.errors).toBeUndefined();
    expect(admin.body.data.auditLog.edges.length).toBeGreaterThan(0);
    const dev = await t.gql(`{ auditLog(first: 5) { edges { node { action } } } }`, { token: await t.memberToken("acme", "DEVELOPER") });
    expect(dev.body.errors?.[0].extensions).toMatchObject({ code: "FORBIDDEN", requires: "ADMIN" });
  });
});
