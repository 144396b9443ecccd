import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { QuotaResource } from "../../src/generated/prisma/enums.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { changeTenantRow, spreadTenant, tenantRows } from "../helpers/placements.ts";

/**
 * @quota: the plan table, per-tenant overrides, QUOTA_EXCEEDED with its
 * extensions and nothing written, and no overshoot under concurrency: count
 * quotas (PROJECTS, SEATS) in the inserting transaction under a lock, window
 * quotas (DEPLOYMENTS_PER_HOUR, WORKFLOWS_PER_HOUR) in the shared store.
 *
 * The window quotas count windows of the app's clock, fixed here (30 minutes
 * into an hour), so no test meets a window's edge and `resetAt` is exact.
 * Each test has a fresh tenant of its own: none depends on another's rows.
 */
const HOUR_MS = 3_600_000;
const FIXED_NOW = Math.floor(Date.now() / HOUR_MS) * HOUR_MS + HOUR_MS / 2;
const clock = () => FIXED_NOW;

describe("quotas", () => {
  let t: TestApp;
  const store = isolatedStore();

  /** A fresh FREE tenant (default limits: PROJECTS 3, SEATS 5, ...) with an OWNER and a DEVELOPER; `rows`: the client where its rows live. */
  async function freshTenant() {
    const slug = `quota-${randomBytes(4).toString("hex")}`;
    const p = t.clients.platform;
    const row = await p.tenant.create({ data: { slug, name: `Quota ${slug}`, plan: "FREE" } });
    for (const role of ["OWNER", "DEVELOPER"] as const) {
      const email = `${role.toLowerCase()}@${slug}.test`;
      const user = await p.user.create({ data: { email, authSubject: email } });
      await p.membership.create({ data: { tenantId: row.id, userId: user.id, role } });
    }
    // TEST_PLACEMENTS=spread: the fresh tenants take the three placements in turn.
    await spreadTenant(t.clients, row.id);
    return {
      /** The tenant's rows, where they live. */
      rows: await tenantRows(t.clients, row.id), id: row.id, slug, owner: await t.token(`owner@${slug}.test`, slug), dev: await t.token(`developer@${slug}.test`, slug) };
  }

  /** What setTenantLimits does: the override row, then the cached tenant invalidated. */
  async function override(tenantId: string, slug: string, resource: QuotaResource, limit: number | null) {
    await changeTenantRow(t.clients, tenantId, (p) =>
      p.tenantLimitOverride.upsert({
        where: { tenantId_resource: { tenantId, resource } },
        create: { tenantId, resource, limit },
        update: { limit },
      }),
    );
    await new (await import("../../src/tenancy/directory.ts")).Directory(t.clients.platform, store).invalidateTenant(tenantId, slug);
  }

  const createProject = (token: string, name: string) =>
    t.gql(`mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }`, { token, variables: { i: { name } } });

  beforeAll(async () => {
    t = await createTestApp({ store, clock });
  });
  afterAll(async () => {
    await t?.close();
    await store.close();
  });

  it("20 concurrent createProject at the FREE limit of 3 make exactly 3", async () => {
    const { dev, ...tenant } = await freshTenant();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => createProject(dev, `Concurrent ${i}`)));
    const ok = results.filter((r) => !r.body.errors);
    const refused = results.filter((r) => r.body.errors?.[0]?.extensions?.code === "QUOTA_EXCEEDED");
    console.log(`PROJECTS quota: 20 concurrent attempts at limit 3 -> ${ok.length} created, ${refused.length} QUOTA_EXCEEDED`);
    expect(ok).toHaveLength(3);
    expect(refused).toHaveLength(17);
    expect(refused[0]!.body.errors![0].extensions).toMatchObject({ code: "QUOTA_EXCEEDED", resource: "PROJECTS", limit: 3, used: 3, requested: 1 });
    // Nothing written for the refused ones: neither the row nor its audit entry.
    expect(await tenant.rows.project.count({ where: { tenantId: tenant.id } })).toBe(3);
    expect(await tenant.rows.auditLogEntry.count({ where: { tenantId: tenant.id, action: "project.create" } })).toBe(3);
  });

  it("a per-tenant override raises the limit, and null makes it unlimited", async () => {
    const { dev, ...tenant } = await freshTenant();
    for (const name of ["First", "Second", "Third"]) expect((await createProject(dev, name)).body.errors).toBeUndefined();
    await override(tenant.id, tenant.slug, "PROJECTS", 4);
    expect((await createProject(dev, "Fourth")).body.errors).toBeUndefined();
    const over = await createProject(dev, "Fifth");
    expect(over.body.errors?.[0].extensions).toMatchObject({ code: "QUOTA_EXCEEDED", limit: 4, used: 4, requested: 1 });
    await override(tenant.id, tenant.slug, "PROJECTS", null);
    expect((await createProject(dev, "Fifth")).body.errors).toBeUndefined();
  });

  it("DEPLOYMENTS_PER_HOUR is a window in the shared store: 20 concurrent at 3 make exactly 3", async () => {
    const { dev, ...tenant } = await freshTenant();
    await override(tenant.id, tenant.slug, "DEPLOYMENTS_PER_HOUR", 3);
    const projectId = (await createProject(dev, "Deployed")).body.data.createProject.project.id;
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
    expect(await tenant.rows.deployment.count({ where: { tenantId: tenant.id } })).toBe(3);
  });

  it("WORKFLOWS_PER_HOUR follows the FREE plan's 5", async () => {
    const { dev, ...tenant } = await freshTenant();
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
    expect(await tenant.rows.workflow.count({ where: { tenantId: tenant.id } })).toBe(5);
  });

  it("SEATS: 10 concurrent invitations with 3 seats left make exactly 3 members", async () => {
    const { owner: admin, ...tenant } = await freshTenant();
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
    expect(await tenant.rows.membership.count({ where: { tenantId: tenant.id } })).toBe(5);
    // The refused invitations created no users either.
    expect(await tenant.rows.user.count({ where: { email: { startsWith: "seat", endsWith: `@${tenant.slug}.test` } } })).toBe(3);
  });

  it("usage reports every quota: limit (null = unlimited), used, remaining, resetAt", async () => {
    const { dev, owner, ...tenant } = await freshTenant();
    await override(tenant.id, tenant.slug, "DEPLOYMENTS_PER_HOUR", 3);
    const projectId = (await createProject(dev, "Used")).body.data.createProject.project.id;
    await createProject(dev, "Used too");
    const deployed = await t.gql(`mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }`, {
      token: dev,
      variables: { i: { projectId } },
    });
    expect(deployed.body.errors).toBeUndefined();
    for (const name of ["wf 1", "wf 2"]) {
      const res = await t.gql(`mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { workflow { id } } }`, { token: dev, variables: { i: { name } } });
      expect(res.body.errors).toBeUndefined();
    }
    const invited = await t.gql(`mutation($i: InviteMemberInput!) { inviteMember(input: $i) { membership { id } } }`, {
      token: owner,
      variables: { i: { email: `third@${tenant.slug}.test`, role: "VIEWER" } },
    });
    expect(invited.body.errors).toBeUndefined();

    const q = `{ usage { plan quotas { resource limit used remaining resetAt } } }`;
    const first = await t.gql(q, { token: owner });
    expect(first.body.errors).toBeUndefined();
    const byResource = Object.fromEntries(first.body.data.usage.quotas.map((u: any) => [u.resource, u]));
    expect(first.body.data.usage.plan).toBe("FREE");
    expect(Object.keys(byResource).sort()).toEqual(["API_REQUESTS_PER_MINUTE", "DEPLOYMENTS_PER_HOUR", "PROJECTS", "SEATS", "SUBSCRIPTIONS", "WORKFLOWS_PER_HOUR"]);
    // Concurrent subscription streams (none open here): FREE allows 10.
    expect(byResource.SUBSCRIPTIONS).toMatchObject({ limit: 10, used: 0, remaining: 10, resetAt: null });
    expect(byResource.PROJECTS).toMatchObject({ limit: 3, used: 2, remaining: 1, resetAt: null });
    expect(byResource.SEATS).toMatchObject({ limit: 5, used: 3, remaining: 2, resetAt: null });
    // The windows end where the app's clock says: the next hour, the next minute.
    const nextHour = new Date(FIXED_NOW + HOUR_MS / 2).toISOString();
    expect(byResource.DEPLOYMENTS_PER_HOUR).toEqual({ resource: "DEPLOYMENTS_PER_HOUR", limit: 3, used: 1, remaining: 2, resetAt: nextHour });
    expect(byResource.WORKFLOWS_PER_HOUR).toEqual({ resource: "WORKFLOWS_PER_HOUR", limit: 5, used: 2, remaining: 3, resetAt: nextHour });
    // The minute counter is the rate limiter's own: every request of this tenant so far, this one included.
    const api = byResource.API_REQUESTS_PER_MINUTE;
    expect(api).toMatchObject({ limit: 100, resetAt: new Date(FIXED_NOW + 60_000).toISOString() });
    expect(api.remaining).toBe(100 - api.used);
    const second = await t.gql(q, { token: owner });
    const api2 = second.body.data.usage.quotas.find((u: any) => u.resource === "API_REQUESTS_PER_MINUTE");
    expect(api2.used).toBe(api.used + 1);
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
