import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { placementOf } from "../../src/db/placement-admin.ts";
import type { TestApp } from "../helpers/app.ts";
import { startSsoIssuers, type SsoIssuers } from "../helpers/sso-issuers.ts";
import { placementApp, tenantRows } from "../helpers/placements.ts";

/**
 * A first SSO login (just-in-time VIEWER membership, docs/tenant-config.md)
 * into a SCHEMA and a DATABASE tenant (issue 15 point 2, docs/placement.md):
 * the identity and membership are made in the main database and written
 * into the tenant's placement in the same transaction, so the placement,
 * which decides the request, knows the new member. They land in that
 * tenant's placement only. And an invitation by a placed tenant of a person
 * the platform knows answers that person's one id (their identity is copied
 * into the placement first), like a POOLED tenant's.
 */

const WHO = `{ viewer { role tenant { slug } memberships { role } } projects(first: 5) { totalCount } }`;
const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;
const SET_IDP = `mutation($input: SetTenantIdentityProviderInput!) { setTenantIdentityProvider(input: $input) { tenant { slug } } }`;

describe("first SSO login into a placed tenant", () => {
  const placed = placementApp();
  let t: TestApp;
  let sso: SsoIssuers;
  const tenants: Record<string, { id: string; slug: string }> = {};
  const suffix = Math.random().toString(36).slice(2, 8);

  const gql: SsoIssuers["gql"] = (query, token, variables) => sso.gql(query, token, variables);
  const sign: SsoIssuers["sign"] = (name, sub) => sso.sign(name, sub);

  beforeAll(async () => {
    t = placed.t;
    sso = await startSsoIssuers(t);
    for (const placement of ["SCHEMA", "DATABASE"] as const) {
      const slug = `sso-${placement.toLowerCase()}-${suffix}`;
      await sso.addIssuer(slug);
      const made = await gql(PROVISION, placed.admin, {
        input: { name: slug, slug, plan: "ENTERPRISE", owner: { email: `owner@${slug}.test` }, placement },
      });
      expect(made.body.errors).toBeUndefined();
      const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
      placed.made.push(placementOf(row));
      tenants[placement] = { id: row.id, slug };
      const tenantId = made.body.data.provisionTenant.tenant.id as string;
      const set = await gql(SET_IDP, placed.admin, { input: { tenantId, issuer: `${sso.base}/${slug}`, jwksUrl: `${sso.base}/${slug}/jwks.json`, audience: "tenantgraph" } });
      expect(set.body.errors).toBeUndefined();
    }
  }, 120_000);

  afterAll(async () => {
    await sso?.close();
  });

  it("makes a VIEWER that the placement accepts, written in that tenant's placement only", async () => {
    for (const [placement, other] of [["SCHEMA", "DATABASE"], ["DATABASE", "SCHEMA"]] as const) {
      const { slug, id } = tenants[placement]!;
      const token = await sign(slug, "alice");
      const first = await gql(WHO, token);
      expect(first.body.errors, placement).toBeUndefined();
      expect(first.body.data.viewer).toEqual({ role: "VIEWER", tenant: { slug }, memberships: [{ role: "VIEWER" }] });
      expect(first.body.data.projects.totalCount).toBe(0);
      // The identity and its membership are in the tenant's placement and the directory.
      const subject = `${sso.base}/${slug}#alice`;
      const rows = await tenantRows(t.clients, id);
      const inPlacement = await rows.user.findUniqueOrThrow({ where: { authSubject: subject }, include: { memberships: true } });
      expect(inPlacement.isPlatformAdmin).toBe(false);
      expect(inPlacement.memberships.map((m) => [m.tenantId, m.role])).toEqual([[id, "VIEWER"]]);
      const inDirectory = await t.clients.platform.user.findUniqueOrThrow({ where: { authSubject: subject } });
      expect(inDirectory.id).toBe(inPlacement.id);
      // Never in the other placed tenant's placement.
      const elsewhere = await tenantRows(t.clients, tenants[other]!.id);
      expect(await elsewhere.user.count({ where: { authSubject: subject } })).toBe(0);
      expect(await elsewhere.membership.count({ where: { userId: inPlacement.id } })).toBe(0);
      // A second login is the same member: no second identity or membership.
      expect((await gql(WHO, token)).body.data.viewer.role).toBe("VIEWER");
      expect(await rows.membership.count({ where: { userId: inPlacement.id } })).toBe(1);
      // The placement's analytics counters count the member written by the login's copy (replica writes fire no trigger: recounted).
      const stats = await rows.tenantStats.findUniqueOrThrow({ where: { tenantId: id } });
      expect(stats.members).toBe(await rows.membership.count({ where: { tenantId: id } }));
    }
  });

  it("a provider's subject never enters the other placed tenant", async () => {
    const token = await sign(tenants.SCHEMA!.slug, "bob");
    const res = await sso.app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "x-tenant-id": tenants.DATABASE!.slug },
      body: JSON.stringify({ query: WHO }),
    });
    const body = (await res.json()) as { data?: any; errors?: any[] };
    expect(body.errors?.[0]?.extensions?.code).toBe("TENANT_ACCESS_DENIED");
    expect(body.data ?? null).toBeNull();
    const elsewhere = await tenantRows(t.clients, tenants.DATABASE!.id);
    expect(await elsewhere.user.count({ where: { authSubject: { endsWith: "#bob" } } })).toBe(0);
  });

  it("an invitation of a known person answers their one id, in a SCHEMA and a DATABASE tenant", async () => {
    const known = await t.clients.platform.user.findUniqueOrThrow({ where: { email: "viewer@acme.test" } });
    for (const placement of ["SCHEMA", "DATABASE"] as const) {
      const { slug, id } = tenants[placement]!;
      const r = await gql(`mutation { inviteMember(input: { email: "viewer@acme.test", role: VIEWER }) { membership { user { id email } } } }`, await t.token(`owner@${slug}.test`, slug));
      expect(r.body.errors, placement).toBeUndefined();
      expect(r.body.data.inviteMember.membership.user.email).toBe("viewer@acme.test");
      // The id answered is the person's own, in the placement and the directory alike (no second identity).
      expect(Buffer.from(r.body.data.inviteMember.membership.user.id, "base64").toString()).toBe(`User:${known.id}`);
      const rows = await tenantRows(t.clients, id);
      expect((await rows.membership.findFirstOrThrow({ where: { tenantId: id, user: { email: "viewer@acme.test" } } })).userId).toBe(known.id);
      expect(await t.clients.platform.membership.count({ where: { tenantId: id, userId: known.id } })).toBe(1);
    }
  });

  it("a refused invitation leaves no identity of another tenant in the placement (SEATS full)", async () => {
    const slug = `inv-seats-${suffix}`;
    const made = await gql(PROVISION, placed.admin, {
      input: { name: slug, slug, plan: "ENTERPRISE", owner: { email: `owner@${slug}.test` }, placement: "SCHEMA", limits: [{ resource: "SEATS", limit: 1 }] },
    });
    expect(made.body.errors).toBeUndefined();
    const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
    placed.made.push(placementOf(row));
    // acme's member, never a member of this tenant.
    const victim = await t.clients.platform.user.findUniqueOrThrow({ where: { email: "viewer@acme.test" } });
    const r = await gql(`mutation { inviteMember(input: { email: "viewer@acme.test", role: VIEWER }) { membership { id } } }`, await t.token(`owner@${slug}.test`, slug));
    expect(r.body.errors?.[0]?.extensions?.code).toBe("QUOTA_EXCEEDED");
    const rows = await tenantRows(t.clients, row.id);
    expect(await rows.membership.count({ where: { userId: victim.id } })).toBe(0);
    // The copy of the identity was made in the refused invitation's transaction: rolled back with it.
    expect(await rows.user.count({ where: { id: victim.id } })).toBe(0);
    // The copying function exists in placements only: the app role of the main database cannot make identities.
    const [fn] = await t.clients.platform.$queryRaw<{ f: string | null }[]>`SELECT to_regproc('app_place_identity')::text AS f`;
    expect(fn?.f ?? null).toBeNull();
  }, 120_000);
});
