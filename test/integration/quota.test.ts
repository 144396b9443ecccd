import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { QuotaResource } from "../../src/generated/prisma/enums.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * @quota: the plan table, per-tenant overrides, QUOTA_EXCEEDED with its
 * extensions and nothing written, and no overshoot under concurrency: count
 * quotas (PROJECTS, SEATS) in the inserting transaction under a lock, window
 * quotas (DEPLOYMENTS_PER_HOUR, WORKFLOWS_PER_HOUR) in the shared store.
 */

describe("quotas", () => {
  let t: TestApp;
  const store = isolatedStore();
  let tenant: { id: string; slug: string };
  let dev: string;
  let admin: string;

  /** A fresh FREE tenant (default limits: PROJECTS 3, SEATS 5, ...) with an OWNER and a DEVELOPER. */
  async function freshTenant() {
    const slug = `quota-${randomBytes(4).toString("hex")}`;
    const p = t.clients.platform;
    const row = await p.tenant.create({ data: { slug, name: `Quota ${slug}`, plan: "FREE" } });
    for (const role of ["OWNER", "DEVELOPER"] as const) {
      const email = `${role.toLowerCase()}@${slug}.test`;
      const user = await p.user.create({ data: { email, authSubject: email } });
      await p.membership.create({ data: { tenantId: row.id, userId: user.id, role } });
    }
    return { id: row.id, slug, owner: await t.token(`owner@${slug}.test`, slug), dev: await t.token(`developer@${slug}.test`, slug) };
  }

  /** What setTenantLimits does: the override row, then the cached tenant invalidated. */
  async function override(tenantId: string, slug: string, resource: QuotaResource, limit: number | null) {
    await t.clients.platform.tenantLimitOverride.upsert({
      where: { tenantId_resource: { tenantId, resource } },
      create: { tenantId, resource, limit },
      update: { limit },
    });
    await new (await import("../../src/tenancy/directory.ts")).Directory(t.clients.platform, store).invalidateTenant(tenantId, slug);
  }

  const createProject = (token: string, name: string) =>
    t.gql(`mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }`, { token, variables: { i: { name } } });

  beforeAll(async () => {
    t = await createTestApp({ store });
    const f = await freshTenant();
    tenant = f;
    dev = f.dev;
    admin = f.owner;
  });
  afterAll(async () => {
    await t?.close();
    await store.close();
  });

  it("20 concurrent createProject at the FREE limit of 3 make exactly 3", async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => createProject(dev, `Concurrent ${i}`)));
    const ok = results.filter((r) => !r.body.errors);
    const refused = results.filter((r) => r.body.errors?.[0]?.extensions?.code === "QUOTA_EXCEEDED");
    console.log(`PROJECTS quota: 20 concurrent attempts at limit 3 -> ${ok.length} created, ${refused.length} QUOTA_EXCEEDED`);
    expect(ok).toHaveLength(3);
    expect(refused).toHaveLength(17);
    expect(refused[0]!.body.errors![0].extensions).toMatchObject({ code: "QUOTA_EXCEEDED", resource: "PROJECTS", limit: 3, used: 3, requested: 1 });
    // Nothing written for the refused ones: neither the row nor its audit entry.
    expect(await t.clients.platform.project.count({ where: { tenantId: tenant.id } })).toBe(3);
    expect(await t.clients.platform.auditLogEntry.count({ where: { tenantId: tenant.id, action: "project.create" } })).toBe(3);
  });

  it("a per-tenant override raises the limit, and null makes it unlimited", async () => {
    await override(tenant.id, tenant.slug, "PROJECTS", 4);
    expect((await createProject(dev, "Fourth")).body.errors).toBeUndefined();
    const over = await createProject(dev, "Fifth");
    expect(over.body.errors?.[0].extensions).toMatchObject({ code: "QUOTA_EXCEEDED", limit: 4, used: 4, requested: 1 });
    await override(tenant.id, tenant.slug, "PROJECTS", null);
    expect((await createProject(dev, "Fifth")).body.errors).toBeUndefined();
  });

  it("DEPLOYMENTS_PER_HOUR is a window in the shared store: 20 concurrent at 3 make exactly 3", async () => {
    await override(tenant.id, tenant.slug, "DEPLOYMENTS_PER_HOUR", 3);
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: tenant.id } });
    const projectId = Buffer.from(`Project:${project.id}`).toString("base64");
    const deploy = () =>
      t.gql(`mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }`, {
        token: dev,
        variables: { i: { projectId } },
      });
    // A failing mutation gives its reservation back.
    const missing = await t.gql(`mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }`, {
      token: dev,
      variables: { i: { projectId: Buffer.from("Project:00000000-0000-0000-0000-000000000001").toString("base64") } },
    });
    expect(missing.body.errors?.[0].extensions.code).toBe("NOT_FOUND");
    const results = await Promise.all(Array.from({ length: 20 }, deploy));
    const ok = results.filter((r) => !r.body.errors);
    const refused = results.filter((r) => r.body.errors?.[0]?.extensions?.code === "QUOTA_EXCEEDED");
    console.log(`DEPLOYMENTS_PER_HOUR quota: 20 concurrent attempts at limit 3 -> ${ok.length} created`);
    expect(ok).toHaveLength(3);
    expect(refused).toHaveLength(17);
    expect(refused[0]!.body.errors![0].extensions).toMatchObject({ resource: "DEPLOYMENTS_PER_HOUR", limit: 3, requested: 1 });
    expect(await t.clients.platform.deployment.count({ where: { tenantId: tenant.id } })).toBe(3);
  });

  it("WORKFLOWS_PER_HOUR follows the FREE plan's 5", async () => {
    const results = [];
    for (let i = 0; i < 7; i++) {
      results.push(
        await t.gql(`mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { workflow { id } } }`, {
          token: dev,
          variables: { i: { name: `wf ${i}` } },
        }),
      );
    }
    expect(results.map((r) => r.body.errors?.[0]?.extensions?.code ?? "OK")).toEqual(["OK", "OK", "OK", "OK", "OK", "QUOTA_EXCEEDED", "QUOTA_EXCEEDED"]);
    expect(results[6]!.body.errors![0].extensions).toMatchObject({ resource: "WORKFLOWS_PER_HOUR", limit: 5, used: 5, requested: 1 });
    expect(await t.clients.platform.workflow.count({ where: { tenantId: tenant.id } })).toBe(5);
  });

  it("SEATS: 10 concurrent invitations with 3 seats left make exactly 3 members", async () => {
    // FREE: 5 seats; the tenant has 2 members.
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        t.gql(`mutation($i: InviteMemberInput!) { inviteMember(input: $i) { membership { id } } }`, {
          token: admin,
          variables: { i: { email: `seat${i}@${tenant.slug}.test`, role: "VIEWER" } },
        }),
      ),
    );
    const ok = results.filter((r) => !r.body.errors);
    expect(ok).toHaveLength(3);
    const refused = results.filter((r) => r.body.errors?.[0]?.extensions?.code === "QUOTA_EXCEEDED");
    expect(refused).toHaveLength(7);
    expect(refused[0]!.body.errors![0].extensions).toMatchObject({ resource: "SEATS", limit: 5, used: 5, requested: 1 });
    expect(await t.clients.platform.membership.count({ where: { tenantId: tenant.id } })).toBe(5);
    // The refused invitations created no users either.
    expect(await t.clients.platform.user.count({ where: { email: { startsWith: "seat", endsWith: `@${tenant.slug}.test` } } })).toBe(3);
  });

  it("usage reports every quota: limit (null = unlimited), used, remaining, resetAt", async () => {
    const q = `{ usage { plan quotas { resource limit used remaining resetAt } } }`;
    const first = await t.gql(q, { token: admin });
    expect(first.body.errors).toBeUndefined();
    const byResource = Object.fromEntries(first.body.data.usage.quotas.map((u: any) => [u.resource, u]));
    expect(first.body.data.usage.plan).toBe("FREE");
    expect(Object.keys(byResource).sort()).toEqual(["API_REQUESTS_PER_MINUTE", "DEPLOYMENTS_PER_HOUR", "PROJECTS", "SEATS", "SUBSCRIPTIONS", "WORKFLOWS_PER_HOUR"]);
    // Concurrent subscription streams (none open here): FREE allows 10.
    expect(byResource.SUBSCRIPTIONS).toMatchObject({ limit: 10, used: 0, remaining: 10, resetAt: null });
    expect(byResource.PROJECTS).toMatchObject({ limit: null, used: 5, remaining: null, resetAt: null });
    expect(byResource.SEATS).toMatchObject({ limit: 5, used: 5, remaining: 0, resetAt: null });
    expect(byResource.DEPLOYMENTS_PER_HOUR).toMatchObject({ limit: 3, used: 3, remaining: 0 });
    expect(byResource.WORKFLOWS_PER_HOUR).toMatchObject({ limit: 5, used: 5, remaining: 0 });
    const hourReset = Date.parse(byResource.DEPLOYMENTS_PER_HOUR.resetAt) - Date.now();
    expect(hourReset).toBeGreaterThan(0);
    expect(hourReset).toBeLessThanOrEqual(3_600_000);
    const api = byResource.API_REQUESTS_PER_MINUTE;
    expect(api.limit).toBe(100);
    expect(api.used).toBeGreaterThanOrEqual(1);
    expect(api.remaining).toBe(100 - api.used);
    const minuteReset = Date.parse(api.resetAt) - Date.now();
    expect(minuteReset).toBeGreaterThan(0);
    expect(minuteReset).toBeLessThanOrEqual(60_000);
    // The minute counter is the rate limiter's own: one more request, one more used.
    const second = await t.gql(q, { token: admin });
    const api2 = second.body.data.usage.quotas.find((u: any) => u.resource === "API_REQUESTS_PER_MINUTE");
    if (Date.parse(api.resetAt) === Date.parse(api2.resetAt)) expect(api2.used).toBe(api.used + 1);
  });

  it("an ENTERPRISE tenant has unlimited seats and projects", async () => {
    const res = await t.gql(`{ usage { plan quotas { resource limit remaining } } }`, { token: await t.memberToken("wayne", "ADMIN") });
    const byResource = Object.fromEntries(res.body.data.usage.quotas.map((u: any) => [u.resource, u]));
    expect(res.body.data.usage.plan).toBe("ENTERPRISE");
    expect(byResource.SEATS).toMatchObject({ limit: null, remaining: null });
    expect(byResource.PROJECTS).toMatchObject({ limit: null, remaining: null });
    expect(byResource.DEPLOYMENTS_PER_HOUR.limit).toBe(1000);
  });
});
