import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
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
      `ALTER TABLE audit_log ADD CONSTRAINT test_refuse_audit CHECK (action NOT IN ('project.create', 'member.invite', 'member.updateRole', 'member.remove', 'apiKey.create'))`,
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

  it("an entry names action, actor, target, request id, IP and the input", async () => {
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
      ip: "203.0.113.7",
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
