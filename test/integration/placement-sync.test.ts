import { beforeAll, describe, expect, it } from "vitest";
import { placementOf } from "../../src/db/placement-admin.ts";
import type { TestApp } from "../helpers/app.ts";
import { placementApp, sql } from "../helpers/placements.ts";

/**
 * The directory and a placement kept in step (src/db/placement-sync.ts,
 * docs/placement.md) without ever granting more than the main database
 * says, and without hanging: regressions found by a security review.
 */
const PROVISION = `mutation($input: ProvisionTenantInput!) {
  provisionTenant(input: $input) { tenant { id slug placement } }
}`;
const PLATFORM = `{ platform { tenants(first: 50) { edges { node { slug } } } } }`;


describe("placement sync", () => {
  const app = placementApp();
  const made = app.made;
  let t: TestApp;
  let admin: string;
  beforeAll(() => ({ t, admin } = app));

  async function provision(slug: string, ownerEmail: string, plan = "PRO") {
    const res = await t.gql(PROVISION, {
      token: admin,
      variables: { input: { name: slug, slug, plan, owner: { email: ownerEmail }, placement: "SCHEMA" } },
    });
    expect(res.body.errors).toBeUndefined();
    const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
    const ref = placementOf(row);
    made.push(ref);
    return { row, ref, gid: res.body.data.provisionTenant.tenant.id as string };
  }

  it("mutations of two SCHEMA tenants at once all complete, and a suspension then takes effect", async () => {
    const tenants = await Promise.all(["dl-one", "dl-two"].map((slug) => provision(slug, `owner@${slug}.test`)));
    const owners = await Promise.all(["dl-one", "dl-two"].map((slug) => t.token(`owner@${slug}.test`, slug)));
    const results = await Promise.all(
      [0, 1, 0, 1, 0, 1].map((i, n) => t.gql(`mutation { createProject(input: { name: "p${n}" }) { project { id } } }`, { token: owners[i] })),
    );
    expect(results.map((r) => r.body.errors?.[0]?.extensions?.code ?? "ok")).toEqual(Array(6).fill("ok"));
    const suspended = await t.gql(`mutation($id: ID!) { suspendTenant(input: { tenantId: $id, reason: "review" }) { tenant { status } } }`, {
      token: admin,
      variables: { id: tenants[0]!.gid },
    });
    expect(suspended.body.errors).toBeUndefined();
    const refused = await t.gql(`{ tenant { slug } }`, { token: owners[0] });
    expect(refused.body.errors?.[0]?.extensions?.code).toBe("TENANT_SUSPENDED");
  });

  it("a platform admin deleted from the main database does not come back, with platform powers, from a placement's copy", async () => {
    const boss = await t.clients.platform.user.create({ data: { email: "boss@probe.test", authSubject: "boss-sub", isPlatformAdmin: true } });
    await provision("probe-one", "boss@probe.test");
    const bossToken = await t.token("boss-sub", "probe-one");
    const invited = await t.gql(`mutation { inviteMember(input: { email: "worker@probe.test", role: ADMIN }) { membership { id } } }`, { token: bossToken });
    expect(invited.body.errors).toBeUndefined();
    const worker = await t.token("worker@probe.test", "probe-one");

    // Offboarded: the user is deleted from the main database.
    await sql(t.db.url, `DELETE FROM users WHERE id = $1`, [boss.id]);
    await t.store.del(`u:sub:boss-sub`);
    // The tenant's next mutation copies its identities back to the main database.
    const p = await t.gql(`mutation { createProject(input: { name: "x" }) { project { id } } }`, { token: worker });
    expect(p.body.errors).toBeUndefined();

    const back = await sql<{ is_platform_admin: boolean }>(t.db.url, `SELECT is_platform_admin FROM users WHERE id = $1`, [boss.id]);
    expect(back.every((u) => u.is_platform_admin === false)).toBe(true);
    await t.store.del(`u:sub:boss-sub`);
    const again = await t.gql(PLATFORM, { token: await t.token("boss-sub") });
    expect(again.body.data?.platform ?? null).toBeNull();
    expect(again.body.errors?.[0]?.extensions?.code).toMatch(/UNAUTHENTICATED|FORBIDDEN/);
  });

  it("a member's look-alike e-mail cannot break the sync, and a platform change never restores an identity provider the owner removed", async () => {
    const { ref, row, gid } = await provision("probe-two", "owner@probe-two.test", "ENTERPRISE");
    const owner = await t.token("owner@probe-two.test", "probe-two");
    const setIdp = (issuer: string | null) =>
      t.gql(`mutation($i: SetTenantIdentityProviderInput!) { setTenantIdentityProvider(input: $i) { tenant { id } } }`, {
        token: owner,
        variables: { i: { tenantId: gid, issuer, jwksUrl: issuer ? "https://idp.probe-two.example/jwks" : null, audience: issuer ? "api" : null } },
      });
    expect((await setIdp("https://idp.probe-two.example")).body.errors).toBeUndefined();

    // Invitations whose e-mails the old rename ("<email>.replaced") made collide.
    for (const email of ["viewer@acme.test.replaced", "viewer@acme.test"]) {
      const r = await t.gql(`mutation($e: EmailAddress!) { inviteMember(input: { email: $e, role: VIEWER }) { membership { id } } }`, {
        token: owner,
        variables: { e: email },
      });
      expect(r.body.errors).toBeUndefined();
    }
    const acmeViewer = await t.clients.platform.user.findFirstOrThrow({ where: { email: "viewer@acme.test" } });
    expect(await t.clients.platform.membership.findFirst({ where: { tenantId: row.id, userId: acmeViewer.id } })).not.toBeNull();

    // The owner removes the provider; then the platform changes a limit.
    expect((await setIdp(null)).body.errors).toBeUndefined();
    const limits = await t.gql(`mutation($i: SetTenantLimitsInput!) { setTenantLimits(input: $i) { tenant { slug } } }`, {
      token: admin,
      variables: { i: { tenantId: gid, limits: [{ resource: "PROJECTS", limit: 50 }] } },
    });
    expect(limits.body.errors).toBeUndefined();
    const [placed] = await sql<{ idp_issuer: string | null }>(t.db.url, `SELECT idp_issuer FROM "${ref.name}".tenants WHERE id = $1`, [row.id]);
    const [main] = await sql<{ idp_issuer: string | null }>(t.db.url, `SELECT idp_issuer FROM tenants WHERE id = $1`, [row.id]);
    expect(placed!.idp_issuer).toBeNull();
    expect(main!.idp_issuer).toBeNull();
  });
});
