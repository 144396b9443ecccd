import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * provisionTenant (issue 3 point 11): platform admins only; tenant, owner
 * (created or reused by e-mail) and OWNER membership, atomically, audited.
 */

const PROVISION = `mutation($input: ProvisionTenantInput!) {
  provisionTenant(input: $input) { tenant { id slug name plan status } owner { id email } }
}`;

describe("provisionTenant", () => {
  let t: TestApp;
  let admin: string;
  const code = (res: { body: { errors?: any[] } }) => res.body.errors?.[0]?.extensions?.code;

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    admin = await t.adminToken();
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  /** Row counts of everything provisioning may write. */
  async function snapshot() {
    const p = t.clients.platform;
    const [tenants, users, memberships, audit, platformAudit] = await Promise.all([
      p.tenant.count(),
      p.user.count(),
      p.membership.count(),
      p.auditLogEntry.count(),
      p.platformAuditEntry.count(),
    ]);
    return { tenants, users, memberships, audit, platformAudit };
  }

  it("a platform admin provisions a tenant with a new owner", async () => {
    const before = await snapshot();
    const res = await t.gql(PROVISION, {
      token: admin,
      variables: { input: { name: "Initech", slug: "initech", plan: "PRO", owner: { email: "Bill.Lumbergh@Initech.test", name: "Bill" } } },
    });
    expect(res.body.errors).toBeUndefined();
    const { tenant, owner } = res.body.data.provisionTenant;
    expect(tenant).toMatchObject({ slug: "initech", name: "Initech", plan: "PRO", status: "ACTIVE" });
    expect(owner.email).toBe("bill.lumbergh@initech.test");

    const p = t.clients.platform;
    const row = await p.tenant.findUniqueOrThrow({ where: { slug: "initech" } });
    const user = await p.user.findUniqueOrThrow({ where: { email: "bill.lumbergh@initech.test" } });
    expect(user.authSubject).toBe("bill.lumbergh@initech.test");
    const membership = await p.membership.findUniqueOrThrow({ where: { tenantId_userId: { tenantId: row.id, userId: user.id } } });
    expect(membership.role).toBe("OWNER");

    const after = await snapshot();
    expect(after.tenants).toBe(before.tenants + 1);
    expect(after.users).toBe(before.users + 1);
    expect(after.memberships).toBe(before.memberships + 1);
    // Audited: on the platform log, and in the new tenant's own log.
    expect(after.platformAudit).toBeGreaterThan(before.platformAudit);
    const platformEntries = await p.platformAuditEntry.findMany({ where: { action: "tenant.provision" } });
    expect(platformEntries.length).toBeGreaterThanOrEqual(1);
    const tenantEntries = await p.auditLogEntry.findMany({ where: { tenantId: row.id, action: "tenant.provision" } });
    expect(tenantEntries.length).toBeGreaterThanOrEqual(1);
    expect(tenantEntries[0]!.crossTenant).toBe(true);
  });

  it("the new owner can query the new tenant right away (sub = lower-cased e-mail)", async () => {
    // A tenant of its own, whichever test ran before.
    const made = await t.gql(PROVISION, {
      token: admin,
      variables: { input: { name: "Initech Basement", slug: "initech-basement", plan: "PRO", owner: { email: "Milton.Waddams@Initech.test" } } },
    });
    expect(made.body.errors).toBeUndefined();
    const token = await t.token("milton.waddams@initech.test", "initech-basement");
    const res = await t.gql(`{ tenant { slug plan } viewer { role user { email } } projects { totalCount } }`, { token });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data).toEqual({
      tenant: { slug: "initech-basement", plan: "PRO" },
      viewer: { role: "OWNER", user: { email: "milton.waddams@initech.test" } },
      projects: { totalCount: 0 },
    });
    const created = await t.gql(`mutation { createProject(input: { name: "TPS Reports" }) { project { slug } } }`, { token });
    expect(created.body.errors).toBeUndefined();
  });

  it("an existing e-mail reuses the user (one user, two memberships)", async () => {
    const before = await snapshot();
    const res = await t.gql(PROVISION, {
      token: admin,
      variables: { input: { name: "Initrode", slug: "initrode", plan: "FREE", owner: { email: "owner@acme.test" } } },
    });
    expect(res.body.errors).toBeUndefined();
    const acmeOwner = await t.clients.platform.user.findUniqueOrThrow({ where: { email: "owner@acme.test" } });
    expect(res.body.data.provisionTenant.owner.email).toBe("owner@acme.test");
    const after = await snapshot();
    expect(after.users).toBe(before.users);
    expect(after.tenants).toBe(before.tenants + 1);
    expect(await t.clients.platform.membership.count({ where: { userId: acmeOwner.id } })).toBe(2);
    // And the reused user reaches the new tenant with their existing subject.
    const q = await t.gql(`{ tenant { slug } viewer { role } }`, { token: await t.token("owner@acme.test", "initrode") });
    expect(q.body.data).toEqual({ tenant: { slug: "initrode" }, viewer: { role: "OWNER" } });
  });

  it("a duplicate slug → BAD_USER_INPUT on field slug, and nothing is written", async () => {
    const before = await snapshot();
    const res = await t.gql(PROVISION, {
      token: admin,
      variables: { input: { name: "Acme Again", slug: "acme", plan: "FREE", owner: { email: "brand-new@owner.test" } } },
    });
    expect(code(res)).toBe("BAD_USER_INPUT");
    expect(res.body.errors![0].extensions.field).toBe("slug");
    expect(await snapshot()).toEqual(before);
    expect(await t.clients.platform.user.findUnique({ where: { email: "brand-new@owner.test" } })).toBeNull();
  });

  it.each([["Has Spaces"], ["has_underscore"], ["a.b"], ["UPPER"], ["a"], ["x".repeat(100)], ["émoji"]])(
    "a bad slug %j → BAD_USER_INPUT and nothing is written",
    async (slug) => {
      const before = await snapshot();
      const res = await t.gql(PROVISION, {
        token: admin,
        variables: { input: { name: "Bad", slug, plan: "FREE", owner: { email: "bad-slug@owner.test" } } },
      });
      expect(code(res)).toBe("BAD_USER_INPUT");
      expect(res.body.errors![0].extensions.field).toBe("slug");
      expect(await snapshot()).toEqual(before);
    },
  );

  it("a tenant OWNER → FORBIDDEN, an anonymous caller → UNAUTHENTICATED; nothing written", async () => {
    const before = await snapshot();
    const input = { name: "Sneaky", slug: "sneaky", plan: "ENTERPRISE", owner: { email: "sneaky@owner.test" } };
    const owner = await t.gql(PROVISION, { token: await t.memberToken("acme", "OWNER"), variables: { input } });
    expect(code(owner)).toBe("FORBIDDEN");
    expect(owner.body.data ?? null).toBeNull();
    const ownerNoTenant = await t.gql(PROVISION, { token: await t.token("owner@acme.test"), variables: { input } });
    expect(code(ownerNoTenant)).toBe("FORBIDDEN");
    const anonymous = await t.gql(PROVISION, { variables: { input } });
    expect(code(anonymous)).toBe("UNAUTHENTICATED");
    expect(await snapshot()).toEqual(before);
    expect(await t.clients.platform.tenant.findUnique({ where: { slug: "sneaky" } })).toBeNull();
  });
});
