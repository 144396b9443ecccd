import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { hashApiKey } from "../../src/tenancy/credentials.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * SPEC sections 6 and 8, issue 6 points 1 and 2: `platform` is for platform
 * admins only (FORBIDDEN and null for everyone else, API keys included);
 * every platform read writes its audit entry before returning data and fails
 * when it cannot; a platform operation naming one tenant shows up in that
 * tenant's own audit log.
 */

const TOTALS = `query PlatformTotals { platform { totals { tenants members } } }`;

describe("platform access", () => {
  let t: TestApp;
  let acmeId: string;
  let apiKeySecret: string;

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    const acme = await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } });
    acmeId = acme.id;
    apiKeySecret = `tg_${randomBytes(24).toString("hex")}`;
    await t.clients.platform.apiKey.create({
      data: { tenantId: acme.id, name: "ci", role: "ADMIN", prefix: apiKeySecret.slice(0, 10), secretHash: hashApiKey(apiKeySecret) },
    });
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  const expectForbidden = (res: { body: { data?: any; errors?: any[] } }) => {
    expect(res.body.data?.platform ?? null).toBeNull();
    expect(res.body.errors?.map((e) => e.extensions?.code)).toContain("FORBIDDEN");
  };

  it("a tenant ADMIN and OWNER get FORBIDDEN and platform: null", async () => {
    expectForbidden(await t.gql(TOTALS, { token: await t.memberToken("acme", "ADMIN") }));
    expectForbidden(await t.gql(TOTALS, { token: await t.memberToken("acme", "OWNER") }));
  });

  it("an ADMIN API key gets FORBIDDEN and platform: null", async () => {
    const res = await t.gql(TOTALS, { headers: { "x-api-key": apiKeySecret } });
    expect(res.status).toBe(200);
    expectForbidden(res);
  });

  it("without credentials: no platform data", async () => {
    const res = await t.gql(TOTALS);
    expect(res.body.data?.platform ?? null).toBeNull();
    expect(res.body.errors?.[0]?.extensions?.code).toMatch(/UNAUTHENTICATED|FORBIDDEN/);
  });

  it("a non-admin cannot run lifecycle mutations either", async () => {
    const res = await t.gql(`mutation { suspendTenant(input: { tenantId: "${toGlobalId("Tenant", acmeId)}", reason: "x" }) { tenant { status } } }`, {
      token: await t.memberToken("acme", "OWNER"),
    });
    expect(res.body.errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    const tenant = await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: acmeId } });
    expect(tenant.status).toBe("ACTIVE");
  });

  it("a platform admin gets data, and the audit entry records actor, operation, variables and crossTenant", async () => {
    const token = await t.adminToken();
    const before = new Date();
    const res = await t.gql(`query UsageTop($first: Int) { platform { tenantUsage(first: $first) { edges { node { tenant { slug } } } } } }`, {
      token,
      variables: { first: 2 },
    });
    expect(res.body.errors).toBeUndefined();
    const slugs = res.body.data.platform.tenantUsage.edges.map((e: any) => e.node.tenant.slug);
    expect(slugs).toHaveLength(2);
    const entries = await t.clients.platform.platformAuditEntry.findMany({
      where: { action: "platform.tenantUsage", createdAt: { gte: new Date(before.getTime() - 1000) } },
    });
    expect(entries).toHaveLength(1);
    const entry = entries[0]!;
    expect(entry.actorType).toBe("USER");
    expect(entry.actorLabel).toBe("ops@platform.test");
    expect(entry.metadata).toMatchObject({ operationName: "UsageTop", variables: { first: 2 }, field: "Platform.tenantUsage" });
    // The tenants touched: those on the page.
    const ids = await t.clients.platform.tenant.findMany({ where: { slug: { in: slugs } }, select: { id: true } });
    expect([...entry.tenantIds].sort()).toEqual(ids.map((i) => i.id).sort());

    // The same entry through the API: Platform.auditLog shows it as a cross-tenant entry.
    const log = await t.gql(
      `{ platform { auditLog(first: 5, filter: { action: "platform.tenantUsage" }) { totalCount edges { node { action crossTenant actorLabel tenant { slug } } } } } }`,
      { token },
    );
    expect(log.body.errors).toBeUndefined();
    expect(log.body.data.platform.auditLog.edges[0].node).toEqual({ action: "platform.tenantUsage", crossTenant: true, actorLabel: "ops@platform.test", tenant: null });
  });

  it("Platform.auditLog merges platform operations with every tenant's own entries, without repeating the transparency copies", async () => {
    const token = await t.adminToken();
    const acme = toGlobalId("Tenant", acmeId);
    await t.gql(`mutation { changeTenantPlan(input: { tenantId: "${acme}", plan: PRO }) { tenant { plan } } }`, { token });
    const project = await t.gql(`mutation { createProject(input: { name: "Audited" }) { project { id } } }`, { token: await t.memberToken("acme", "DEVELOPER") });
    expect(project.body.errors).toBeUndefined();
    const q = `query A($action: String) { platform { auditLog(first: 10, filter: { action: $action }) { totalCount edges { node { action crossTenant actorLabel tenant { slug } } } } } }`;
    const plan = await t.gql(q, { token, variables: { action: "tenant.changePlan" } });
    expect(plan.body.errors).toBeUndefined();
    // One entry, not two: the copy in acme's own log (access transparency) is not listed again.
    expect(plan.body.data.platform.auditLog).toEqual({
      totalCount: 1,
      edges: [{ node: { action: "tenant.changePlan", crossTenant: true, actorLabel: "ops@platform.test", tenant: { slug: "acme" } } }],
    });
    const own = await t.gql(q, { token, variables: { action: "project.create" } });
    expect(own.body.errors).toBeUndefined();
    expect(own.body.data.platform.auditLog.edges.map((e: any) => e.node)).toContainEqual({
      action: "project.create",
      crossTenant: false,
      actorLabel: "developer@acme.test",
      tenant: { slug: "acme" },
    });
  });

  it("fails closed: when the audit entry cannot be written, the query errors and returns no data", async () => {
    const owner = new pg.Client({ connectionString: t.db.url });
    await owner.connect();
    try {
      await owner.query(
        `ALTER TABLE platform_audit_log ADD CONSTRAINT test_reject_totals CHECK (action <> 'platform.totals') NOT VALID`,
      );
      const res = await t.gql(TOTALS, { token: await t.adminToken() });
      expect(res.body.data?.platform ?? null).toBeNull();
      expect(res.body.errors?.length).toBeGreaterThan(0);
      expect(JSON.stringify(res.body)).not.toMatch(/"tenants":\s*\d/);
      // Another operation still works: only the entry that cannot be written blocks its read.
      const other = await t.gql(`{ platform { tenants(first: 1) { edges { node { slug } } } } }`, { token: await t.adminToken() });
      expect(other.body.errors).toBeUndefined();
    } finally {
      await owner.query(`ALTER TABLE platform_audit_log DROP CONSTRAINT IF EXISTS test_reject_totals`);
      await owner.end();
    }
    const ok = await t.gql(TOTALS, { token: await t.adminToken() });
    expect(ok.body.errors).toBeUndefined();
    expect(ok.body.data.platform.totals.tenants).toBe(3);
  });

  it("access transparency: a platform operation on one tenant appears in that tenant's audit log", async () => {
    const gid = toGlobalId("Tenant", acmeId);
    const res = await t.gql(`mutation Limits($id: ID!) { setTenantLimits(input: { tenantId: $id, limits: [{ resource: WORKFLOWS_PER_HOUR, limit: 42 }] }) { tenant { slug } } }`, {
      token: await t.adminToken(),
      variables: { id: gid },
    });
    expect(res.body.errors).toBeUndefined();
    const log = await t.gql(`{ auditLog(first: 10, filter: { action: "tenant.setLimits" }) { edges { node { action crossTenant actorLabel } } } }`, {
      token: await t.memberToken("acme", "ADMIN"),
    });
    expect(log.body.errors).toBeUndefined();
    expect(log.body.data.auditLog.edges.map((e: any) => e.node)).toEqual([
      { action: "tenant.setLimits", crossTenant: true, actorLabel: "ops@platform.test" },
    ]);
    // Another tenant does not see it.
    const other = await t.gql(`{ auditLog(first: 10, filter: { action: "tenant.setLimits" }) { edges { node { action } } } }`, {
      token: await t.memberToken("globex", "ADMIN"),
    });
    expect(other.body.data.auditLog.edges).toEqual([]);
  });
});
