import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Directory } from "../../src/tenancy/directory.ts";
import { createTestApp, type TestApp, tenantIdsBySlug } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { changeTenantRow, writeTenantRows } from "../helpers/placements.ts";

/**
 * SPEC section 4: tenant from the `tid` claim, then X-Tenant-ID (id or
 * slug), then the Host subdomain under BASE_DOMAIN ("localhost" in the test
 * app); conflicting sources refused; membership checked on every request.
 */

describe("tenant resolution", () => {
  let t: TestApp;
  let directory: Directory;
  let ids: Record<string, string> = {};

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    directory = new Directory(t.clients.platform, t.store);
    ids = await tenantIdsBySlug(t);
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  /** POST /graphql on a given host. */
  async function onHost(host: string, query: string, token?: string, headers: Record<string, string> = {}) {
    const res = await t.app.fetch(`http://${host}/graphql`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        host,
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...headers,
      },
      body: JSON.stringify({ query }),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as { data?: any; errors?: any[] } };
  }

  const TENANT = `{ tenant { slug } viewer { role } }`;
  const code = (res: { body: { errors?: any[] } }) => res.body.errors?.[0]?.extensions?.code;

  describe("sources", () => {
    it("the tid claim (slug)", async () => {
      const res = await t.gql(TENANT, { token: await t.token("owner@acme.test", "acme") });
      expect(res.body.data).toEqual({ tenant: { slug: "acme" }, viewer: { role: "OWNER" } });
      expect(res.headers.get("x-tenant-id")).toBe(ids.acme);
    });

    it("the tid claim (id)", async () => {
      const res = await t.gql(TENANT, { token: await t.token("owner@acme.test", ids.acme) });
      expect(res.body.data.tenant.slug).toBe("acme");
    });

    it("X-Tenant-ID by slug", async () => {
      const res = await t.gql(TENANT, { token: await t.token("admin@globex.test"), headers: { "x-tenant-id": "globex" } });
      expect(res.body.data).toEqual({ tenant: { slug: "globex" }, viewer: { role: "ADMIN" } });
      expect(res.headers.get("x-tenant-id")).toBe(ids.globex);
    });

    it("X-Tenant-ID by id", async () => {
      const res = await t.gql(TENANT, { token: await t.token("admin@globex.test"), headers: { "x-tenant-id": ids.globex! } });
      expect(res.body.data.tenant.slug).toBe("globex");
    });

    it("X-Tenant-ID is case-insensitive for slugs", async () => {
      const res = await t.gql(TENANT, { token: await t.token("admin@globex.test"), headers: { "x-tenant-id": "GloBex" } });
      expect(res.body.data?.tenant?.slug).toBe("globex");
    });

    it("the Host subdomain under BASE_DOMAIN", async () => {
      const res = await onHost("wayne.localhost", TENANT, await t.token("viewer@wayne.test"));
      expect(res.body.data).toEqual({ tenant: { slug: "wayne" }, viewer: { role: "VIEWER" } });
      const withPort = await onHost("wayne.localhost:4000", TENANT, await t.token("viewer@wayne.test"));
      expect(withPort.body.data?.tenant?.slug).toBe("wayne");
    });

    it("a host that is not a subdomain of BASE_DOMAIN names no tenant", async () => {
      for (const host of ["localhost", "wayne.example.com", "a.wayne.localhost", "wayne.localhost.evil.test"]) {
        const res = await onHost(host, `{ viewer { tenant { slug } } projects { totalCount } }`, await t.token("viewer@wayne.test"));
        expect(res.body.data?.viewer?.tenant ?? null).toBeNull();
        expect(code(res)).toBe("TENANT_REQUIRED");
      }
    });
  });

  describe("precedence and conflicts", () => {
    it("tid > X-Tenant-ID > host when they agree", async () => {
      const res = await onHost("acme.localhost", TENANT, await t.token("owner@acme.test", "acme"), { "x-tenant-id": ids.acme! });
      expect(res.body.data?.tenant?.slug).toBe("acme");
    });

    it("tid=acme with X-Tenant-ID=globex is refused", async () => {
      // The caller is a member of both: the conflict alone is the reason.
      await acmeOwnerInGlobex();
      const token = await t.token("owner@acme.test", "acme");
      const res = await t.gql(TENANT, { token, headers: { "x-tenant-id": "globex" } });
      expect(code(res)).toBe("TENANT_ACCESS_DENIED");
      expect(res.body.data ?? null).toBeNull();
      // Both sources alone work.
      expect((await t.gql(TENANT, { token })).body.data?.tenant?.slug).toBe("acme");
      expect((await t.gql(TENANT, { token: await t.token("owner@acme.test"), headers: { "x-tenant-id": "globex" } })).body.data?.tenant?.slug).toBe(
        "globex",
      );
    });

    it("a conflict with an unknown tenant looks like a conflict with a real one", async () => {
      const token = await t.token("owner@acme.test", "acme");
      const real = await t.gql(TENANT, { token, headers: { "x-tenant-id": "wayne" } });
      const fake = await t.gql(TENANT, { token, headers: { "x-tenant-id": "no-such-tenant" } });
      expect(code(real)).toBe("TENANT_ACCESS_DENIED");
      expect(fake.body.errors).toEqual(real.body.errors);
      expect(fake.status).toBe(real.status);
    });

    it("X-Tenant-ID=acme on host globex.localhost is refused; tid vs host too", async () => {
      await acmeOwnerInGlobex();
      const token = await t.token("owner@acme.test");
      expect(code(await onHost("globex.localhost", TENANT, token, { "x-tenant-id": "acme" }))).toBe("TENANT_ACCESS_DENIED");
      expect(code(await onHost("globex.localhost", TENANT, await t.token("owner@acme.test", "acme")))).toBe("TENANT_ACCESS_DENIED");
      expect((await onHost("globex.localhost", TENANT, token)).body.data?.tenant?.slug).toBe("globex");
    });
  });

  describe("who may enter", () => {
    it("a non-member → TENANT_ACCESS_DENIED", async () => {
      const res = await t.gql(TENANT, { token: await t.token("owner@wayne.test", "acme") });
      expect(code(res)).toBe("TENANT_ACCESS_DENIED");
      expect(res.status).toBe(403);
      expect(res.body.data ?? null).toBeNull();
    });

    it("an unknown tenant → TENANT_ACCESS_DENIED, indistinguishable from non-member", async () => {
      const token = await t.token("owner@wayne.test");
      const unknown = await t.gql(TENANT, { token, headers: { "x-tenant-id": "no-such-tenant" } });
      const unknownId = await t.gql(TENANT, { token, headers: { "x-tenant-id": "00000000-0000-4000-8000-000000000000" } });
      const notMember = await t.gql(TENANT, { token, headers: { "x-tenant-id": "acme" } });
      for (const res of [unknown, unknownId, notMember]) {
        expect(res.status).toBe(403);
        expect(code(res)).toBe("TENANT_ACCESS_DENIED");
      }
      expect(unknown.body.errors![0].message).toBe(notMember.body.errors![0].message);
      expect(unknownId.body.errors![0].message).toBe(notMember.body.errors![0].message);
    });

    it("a suspended tenant → TENANT_SUSPENDED (after invalidateTenant), and active again after reactivation", async () => {
      const token = await t.token("owner@wayne.test", "wayne");
      expect((await t.gql(TENANT, { token })).body.data?.tenant?.slug).toBe("wayne");
      await changeTenantRow(t.clients, ids.wayne!, (p) => p.tenant.update({ where: { id: ids.wayne }, data: { status: "SUSPENDED" } }));
      await directory.invalidateTenant(ids.wayne!, "wayne");
      const res = await t.gql(TENANT, { token });
      expect(code(res)).toBe("TENANT_SUSPENDED");
      expect(res.body.data ?? null).toBeNull();
      await changeTenantRow(t.clients, ids.wayne!, (p) => p.tenant.update({ where: { id: ids.wayne }, data: { status: "ACTIVE" } }));
      await directory.invalidateTenant(ids.wayne!, "wayne");
      expect((await t.gql(TENANT, { token })).body.data?.tenant?.slug).toBe("wayne");
    });

    it("a non-member learns nothing about a suspended tenant (ACCESS_DENIED first)", async () => {
      await changeTenantRow(t.clients, ids.wayne!, (p) => p.tenant.update({ where: { id: ids.wayne }, data: { status: "SUSPENDED" } }));
      await directory.invalidateTenant(ids.wayne!, "wayne");
      try {
        expect(code(await t.gql(TENANT, { token: await t.token("owner@acme.test", "wayne") }))).toBe("TENANT_ACCESS_DENIED");
      } finally {
        await changeTenantRow(t.clients, ids.wayne!, (p) => p.tenant.update({ where: { id: ids.wayne }, data: { status: "ACTIVE" } }));
        await directory.invalidateTenant(ids.wayne!, "wayne");
      }
    });

    it("no tenant: viewer works, projects → TENANT_REQUIRED", async () => {
      const token = await t.token("developer@acme.test");
      const res = await t.gql(`{ viewer { user { email } tenant { slug } role memberships { role } } }`, { token });
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data.viewer).toMatchObject({ user: { email: "developer@acme.test" }, tenant: null, role: null });
      expect(res.body.data.viewer.memberships).toEqual([{ role: "DEVELOPER" }]);
      expect(res.headers.get("x-tenant-id")).toBeNull();
      const projects = await t.gql(`{ projects { totalCount } }`, { token });
      expect(code(projects)).toBe("TENANT_REQUIRED");
      const tenant = await t.gql(`{ tenant { slug } }`, { token });
      expect(code(tenant)).toBe("TENANT_REQUIRED");
    });

    it("a platform admin without membership is refused tenant data", async () => {
      const admin = await t.adminToken();
      // Naming a tenant: not a member.
      const named = await t.gql(`{ projects { totalCount } }`, { token: admin, headers: { "x-tenant-id": "acme" } });
      expect(code(named)).toBe("TENANT_ACCESS_DENIED");
      expect(named.body.data ?? null).toBeNull();
      // Without a tenant: no tenant role.
      const bare = await t.gql(`{ projects { totalCount } }`, { token: admin });
      expect(["FORBIDDEN", "TENANT_REQUIRED"]).toContain(code(bare));
      expect(bare.body.data?.projects ?? null).toBeNull();
      const viewer = await t.gql(`{ viewer { isPlatformAdmin tenant { slug } } }`, { token: admin });
      expect(viewer.body.data.viewer).toEqual({ isPlatformAdmin: true, tenant: null });
    });
  });

  describe("membership changes apply on the next request", () => {
    it("a role change", async () => {
      const token = await t.token("viewer@acme.test", "acme");
      expect((await t.gql(`{ viewer { role } }`, { token })).body.data.viewer.role).toBe("VIEWER");
      const uid = (await userId("viewer@acme.test"))!;
      await t.clients.platform.membership.update({
        where: { tenantId_userId: { tenantId: ids.acme!, userId: uid } },
        data: { role: "ADMIN" },
      });
      await directory.invalidateMembership(ids.acme!, uid);
      expect((await t.gql(`{ viewer { role } }`, { token })).body.data.viewer.role).toBe("ADMIN");
      await t.clients.platform.membership.update({
        where: { tenantId_userId: { tenantId: ids.acme!, userId: uid } },
        data: { role: "VIEWER" },
      });
      await directory.invalidateMembership(ids.acme!, uid);
      expect((await t.gql(`{ viewer { role } }`, { token })).body.data.viewer.role).toBe("VIEWER");
    });

    it("a role change takes effect on writes (a demoted developer cannot create)", async () => {
      const token = await t.token("developer@acme.test", "acme");
      const uid = (await userId("developer@acme.test"))!;
      await t.clients.platform.membership.update({
        where: { tenantId_userId: { tenantId: ids.acme!, userId: uid } },
        data: { role: "VIEWER" },
      });
      await directory.invalidateMembership(ids.acme!, uid);
      try {
        const res = await t.gql(`mutation { createProject(input: { name: "Demoted" }) { project { id } } }`, { token });
        expect(code(res)).toBe("FORBIDDEN");
        expect(await t.clients.platform.project.count({ where: { tenantId: ids.acme, name: "Demoted" } })).toBe(0);
      } finally {
        await t.clients.platform.membership.update({
          where: { tenantId_userId: { tenantId: ids.acme!, userId: uid } },
          data: { role: "DEVELOPER" },
        });
        await directory.invalidateMembership(ids.acme!, uid);
      }
    });

    it("a removal", async () => {
      const token = await t.token("viewer@globex.test", "globex");
      expect((await t.gql(`{ tenant { slug } }`, { token })).body.data?.tenant?.slug).toBe("globex");
      const uid = (await userId("viewer@globex.test"))!;
      await writeTenantRows(t.clients, ids.globex!, (db) => db.membership.delete({ where: { tenantId_userId: { tenantId: ids.globex!, userId: uid } } }));
      await directory.invalidateMembership(ids.globex!, uid);
      const res = await t.gql(`{ tenant { slug } }`, { token });
      expect(code(res)).toBe("TENANT_ACCESS_DENIED");
      expect(res.body.data ?? null).toBeNull();
    });
  });

  /** owner@acme.test becomes a VIEWER of globex too (idempotent; the directory forgets a "not a member" it cached). */
  async function acmeOwnerInGlobex() {
    const uid = (await userId("owner@acme.test"))!;
    // In globex's placement under TEST_PLACEMENTS=spread, and in the directory.
    await writeTenantRows(
      t.clients,
      ids.globex!,
      (db) => db.membership.upsert({ where: { tenantId_userId: { tenantId: ids.globex!, userId: uid } }, create: { tenantId: ids.globex!, userId: uid, role: "VIEWER" }, update: {} }),
      { users: [uid] },
    );
    await directory.invalidateMembership(ids.globex!, uid);
  }

  async function userId(email: string) {
    return (await t.clients.platform.user.findUnique({ where: { email } }))?.id;
  }
});
