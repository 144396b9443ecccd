import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { placementOf } from "../../src/db/placement-admin.ts";
import type { TestApp } from "../helpers/app.ts";
import { startSsoIssuers, type SsoIssuers } from "../helpers/sso-issuers.ts";
import { placementApp, tenantRows } from "../helpers/placements.ts";

/**
 * A tenant's identity-provider issuer is unique across the whole deployment
 * (one issuer names one tenant, docs/tenant-config.md), whatever the
 * placements: the main database's registry decides it when a placed
 * tenant's OWNER sets its provider (docs/placement.md, "Issuers are claimed
 * in the main database"). Before, the placement's unique index (which sees
 * that tenant alone) let a SCHEMA or DATABASE tenant take another tenant's
 * issuer: the change succeeded in the placement, the copy to the main
 * database failed on its index, and every later directory sync of that
 * tenant with it (its new members never reached the directory).
 */

const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;
const SET_IDP = `mutation($input: SetTenantIdentityProviderInput!) { setTenantIdentityProvider(input: $input) { tenant { slug } } }`;
const WHO = `{ viewer { role tenant { slug } } }`;

describe("identity-provider issuers across placements", () => {
  const placed = placementApp();
  let t: TestApp;
  let sso: SsoIssuers;
  const suffix = Math.random().toString(36).slice(2, 8);
  const tenants: Record<"POOLED" | "SCHEMA" | "DATABASE", { id: string; gid: string; slug: string }> = {} as never;

  const idp = (name: string) => ({ issuer: `${sso.base}/${name}`, jwksUrl: `${sso.base}/${name}/jwks.json`, audience: "tenantgraph" });
  const ownerToken = (slug: string) => t.token(`owner@${slug}.test`, slug);
  /** The tenant's OWNER sets its provider: issuer `issuerName`'s, key set its own. */
  const ownerSets = async (which: keyof typeof tenants, issuerName: string) => {
    const { gid, slug } = tenants[which];
    return sso.gql(SET_IDP, await ownerToken(slug), { input: { tenantId: gid, ...idp(slug), issuer: idp(issuerName).issuer } });
  };
  /** The tenant's issuer in the main database's row and in its placement's. */
  const issuers = async (which: keyof typeof tenants) => {
    const { id } = tenants[which];
    const main = await t.clients.platform.tenant.findUniqueOrThrow({ where: { id } });
    const placement = await (await tenantRows(t.clients, id)).tenant.findUniqueOrThrow({ where: { id } });
    return { main: main.idpIssuer, placement: placement.idpIssuer };
  };

  beforeAll(async () => {
    t = placed.t;
    sso = await startSsoIssuers(t);
    for (const placement of ["POOLED", "SCHEMA", "DATABASE"] as const) {
      const slug = `iss-${placement.toLowerCase()}-${suffix}`;
      await sso.addIssuer(slug);
      const made = await sso.gql(PROVISION, placed.admin, {
        input: { name: slug, slug, plan: "ENTERPRISE", owner: { email: `owner@${slug}.test` }, placement },
      });
      expect(made.body.errors).toBeUndefined();
      const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
      if (placement !== "POOLED") placed.made.push(placementOf(row));
      tenants[placement] = { id: row.id, gid: made.body.data.provisionTenant.tenant.id, slug };
    }
    // The POOLED tenant's provider, set by a platform admin.
    const set = await sso.gql(SET_IDP, placed.admin, { input: { tenantId: tenants.POOLED.gid, ...idp(tenants.POOLED.slug) } });
    expect(set.body.errors).toBeUndefined();
  }, 180_000);

  afterAll(async () => {
    await sso?.close();
  });

  it("a placed tenant's OWNER cannot take another tenant's issuer, and the issuer's tokens stay that tenant's", async () => {
    const pooled = tenants.POOLED;
    for (const which of ["SCHEMA", "DATABASE"] as const) {
      const before = await issuers(which);
      const r = await ownerSets(which, pooled.slug);
      expect(r.body.errors?.[0]?.extensions, which).toMatchObject({ code: "BAD_USER_INPUT", field: "issuer" });
      expect(JSON.stringify(r.body.errors)).not.toContain(pooled.slug);
      // Nothing changed, in the placement or the directory.
      expect(await issuers(which), which).toEqual(before);
      expect(before.placement).not.toBe(idp(pooled.slug).issuer);
    }
    expect(await issuers("POOLED")).toEqual({ main: idp(pooled.slug).issuer, placement: idp(pooled.slug).issuer });

    // The issuer's tokens are the POOLED tenant's, and reach no placed tenant.
    const token = await sso.sign(pooled.slug, "alice");
    expect((await sso.gql(WHO, token)).body.data?.viewer).toEqual({ role: "VIEWER", tenant: { slug: pooled.slug } });
    for (const which of ["SCHEMA", "DATABASE"] as const) {
      const res = await sso.app.fetch("http://localhost/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "x-tenant-id": tenants[which].slug },
        body: JSON.stringify({ query: WHO }),
      });
      const body = (await res.json()) as { data?: any; errors?: any[] };
      expect(body.errors?.[0]?.extensions?.code, which).toBe("TENANT_ACCESS_DENIED");
    }

    // The refused tenant's directory sync still works: its next member reaches the main database.
    const { slug, id } = tenants.DATABASE;
    const invited = await sso.gql(`mutation { inviteMember(input: { email: "new@${slug}.test", role: VIEWER }) { membership { id } } }`, await ownerToken(slug));
    expect(invited.body.errors).toBeUndefined();
    expect(await t.clients.platform.membership.count({ where: { tenantId: id, user: { email: `new@${slug}.test` } } })).toBe(1);
  });

  it("a placed tenant's issuer is in the registry at once: no other tenant, placed or POOLED, can take it", async () => {
    const schema = tenants.SCHEMA;
    expect((await ownerSets("SCHEMA", schema.slug)).body.errors).toBeUndefined();
    expect(await issuers("SCHEMA")).toEqual({ main: idp(schema.slug).issuer, placement: idp(schema.slug).issuer });
    const before = await issuers("DATABASE");
    const other = await ownerSets("DATABASE", schema.slug);
    expect(other.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "issuer" });
    expect(await issuers("DATABASE")).toEqual(before);
    const platform = await sso.gql(SET_IDP, placed.admin, { input: { tenantId: tenants.POOLED.gid, ...idp(schema.slug) } });
    expect(platform.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "issuer" });
    // Removing it frees it for another tenant.
    const removed = await sso.gql(SET_IDP, await ownerToken(schema.slug), { input: { tenantId: schema.gid, issuer: null, jwksUrl: null } });
    expect(removed.body.errors).toBeUndefined();
    expect(await issuers("SCHEMA")).toEqual({ main: null, placement: null });
    expect((await ownerSets("DATABASE", schema.slug)).body.errors).toBeUndefined();
    expect(await issuers("DATABASE")).toEqual({ main: idp(schema.slug).issuer, placement: idp(schema.slug).issuer });
  });

  it("two placed tenants claiming one issuer at once: one has it, the other is refused", async () => {
    const name = `race-${suffix}`;
    const [a, b] = await Promise.all([ownerSets("SCHEMA", name), ownerSets("DATABASE", name)]);
    const codes = [a, b].map((r) => r.body.errors?.[0]?.extensions?.code ?? "ok").sort();
    expect(codes).toEqual(["BAD_USER_INPUT", "ok"]);
    const loser = a.body.errors ? a : b;
    expect(loser.body.errors?.[0]?.extensions?.field).toBe("issuer");
    const held = [await issuers("SCHEMA"), await issuers("DATABASE")];
    const issuer = idp(name).issuer;
    // Exactly one tenant holds it, in the main database and in its placement alike.
    expect(held.filter((h) => h.main === issuer)).toHaveLength(1);
    expect(held.filter((h) => h.placement === issuer)).toHaveLength(1);
    expect(held.every((h) => (h.main === issuer) === (h.placement === issuer))).toBe(true);
  });
});
