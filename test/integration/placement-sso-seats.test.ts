import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { placementOf } from "../../src/db/placement-admin.ts";
import type { TestApp } from "../helpers/app.ts";
import { startSsoIssuers, type SsoIssuers } from "../helpers/sso-issuers.ts";
import { placementApp, tenantRows } from "../helpers/placements.ts";

/**
 * The SEATS of a placed tenant at a first SSO login (just-in-time VIEWER,
 * docs/placement.md "Routing"): counted in its placement, where its
 * memberships are authoritative (and under the lock inviteMember takes
 * there), never in the directory's copy in the main database, which may be
 * stale (a directory sync that failed after an invitation: documented).
 * Before, the login counted the main database's copy: a tenant at its limit
 * in its placement admitted one more member.
 */

const WHO = `{ viewer { role tenant { slug } } }`;
const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;
const SET_IDP = `mutation($input: SetTenantIdentityProviderInput!) { setTenantIdentityProvider(input: $input) { tenant { slug } } }`;
const INVITE = `mutation($email: EmailAddress!) { inviteMember(input: { email: $email, role: VIEWER }) { membership { id } } }`;

describe("SSO seats of a placed tenant", () => {
  const placed = placementApp();
  let t: TestApp;
  let sso: SsoIssuers;
  const suffix = Math.random().toString(36).slice(2, 8);

  const gql: SsoIssuers["gql"] = (query, token, variables) => sso.gql(query, token, variables);
  const sign: SsoIssuers["sign"] = (name, sub) => sso.sign(name, sub);

  beforeAll(async () => {
    t = placed.t;
    sso = await startSsoIssuers(t);
  });

  afterAll(async () => {
    await sso?.close();
  });

  /** An ENTERPRISE tenant of `placement` with SEATS = 2 and its own identity provider. */
  async function ssoTenant(tag: string, placement: "SCHEMA" | "DATABASE") {
    const slug = `seats-${tag}-${suffix}`;
    await sso.addIssuer(slug);
    const made = await gql(PROVISION, placed.admin, {
      input: { name: slug, slug, plan: "ENTERPRISE", owner: { email: `owner@${slug}.test` }, placement, limits: [{ resource: "SEATS", limit: 2 }] },
    });
    expect(made.body.errors).toBeUndefined();
    const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
    placed.made.push(placementOf(row));
    const tenantId = made.body.data.provisionTenant.tenant.id as string;
    const set = await gql(SET_IDP, placed.admin, { input: { tenantId, issuer: `${sso.base}/${slug}`, jwksUrl: `${sso.base}/${slug}/jwks.json`, audience: "tenantgraph" } });
    expect(set.body.errors).toBeUndefined();
    return { slug, id: row.id, owner: await t.token(`owner@${slug}.test`, slug) };
  }

  it.each(["SCHEMA", "DATABASE"] as const)("a %s tenant at its seat limit in its placement admits no first SSO login, whatever the directory's copy says", async (placement) => {
    const k = await ssoTenant(placement.toLowerCase(), placement);
    // The second seat taken by an invitation (in the placement).
    const invited = await gql(INVITE, k.owner, { email: `member@${k.slug}.test` });
    expect(invited.body.errors).toBeUndefined();
    const rows = await tenantRows(t.clients, k.id);
    expect(await rows.membership.count({ where: { tenantId: k.id } })).toBe(2);
    // The directory's copy is stale (the sync after the invitation failed, a documented state): one member there.
    const user = await t.clients.platform.user.findUniqueOrThrow({ where: { email: `member@${k.slug}.test` } });
    await t.clients.platform.membership.deleteMany({ where: { tenantId: k.id, userId: user.id } });
    expect(await t.clients.platform.membership.count({ where: { tenantId: k.id } })).toBe(1);

    const login = await gql(WHO, await sign(k.slug, "carol"));
    expect(login.body.data?.viewer ?? null).toBeNull();
    expect(login.body.errors?.[0]?.extensions?.code).toBe("TENANT_ACCESS_DENIED");
    // Nothing written: no identity, no membership, in the placement or the directory.
    const subject = `${sso.base}/${k.slug}#carol`;
    expect(await rows.membership.count({ where: { tenantId: k.id } })).toBe(2);
    expect(await rows.user.count({ where: { authSubject: subject } })).toBe(0);
    expect(await t.clients.platform.user.count({ where: { authSubject: subject } })).toBe(0);
    expect(await t.clients.platform.membership.count({ where: { tenantId: k.id } })).toBe(1);

    // A seat freed in the placement (the directory's copy still counts 1): the next first login is admitted.
    const removed = await rows.membership.deleteMany({ where: { tenantId: k.id, userId: user.id } });
    expect(removed.count).toBe(1);
    const admitted = await gql(WHO, await sign(k.slug, "dave"));
    expect(admitted.body.errors).toBeUndefined();
    expect(admitted.body.data.viewer).toEqual({ role: "VIEWER", tenant: { slug: k.slug } });
    expect(await rows.membership.count({ where: { tenantId: k.id } })).toBe(2);
  }, 60_000);

  it.each(["SCHEMA", "DATABASE"] as const)("a %s tenant whose directory copy is full but whose placement has a seat admits a first SSO login", async (placement) => {
    const k = await ssoTenant(`free-${placement.toLowerCase()}`, placement);
    // The directory's copy says 2 members (a removal in the placement not yet synced): the placement has 1.
    const invited = await gql(INVITE, k.owner, { email: `member@${k.slug}.test` });
    expect(invited.body.errors).toBeUndefined();
    const rows = await tenantRows(t.clients, k.id);
    const user = await t.clients.platform.user.findUniqueOrThrow({ where: { email: `member@${k.slug}.test` } });
    expect((await rows.membership.deleteMany({ where: { tenantId: k.id, userId: user.id } })).count).toBe(1);
    expect(await t.clients.platform.membership.count({ where: { tenantId: k.id } })).toBe(2);
    const admitted = await gql(WHO, await sign(k.slug, "erin"));
    expect(admitted.body.errors).toBeUndefined();
    expect(admitted.body.data.viewer).toEqual({ role: "VIEWER", tenant: { slug: k.slug } });
  }, 60_000);
});
