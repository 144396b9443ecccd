import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { placementOf, type PlacementRef } from "../../src/db/placement-admin.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * A placement (SCHEMA or DATABASE) holds the tenant's rows; it is never the
 * authority for global facts. The main database decides who is a platform
 * admin and what the tenant's plan, limits and features are: a change made
 * there by the platform takes effect for a placed tenant's next request,
 * exactly as for a POOLED one.
 */
const PROVISION = `mutation($input: ProvisionTenantInput!) {
  provisionTenant(input: $input) { tenant { id slug placement } }
}`;
const PLATFORM = `{ platform { tenants(first: 50) { edges { node { slug } } } } }`;

describe.each(["SCHEMA", "DATABASE"] as const)("a %s tenant takes the main database's word", (placement) => {
  let t: TestApp;
  let admin: string;
  let tenantGid: string;
  const slug = `auth-${placement.toLowerCase()}`;
  const made: PlacementRef[] = [];

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore() });
    admin = await t.adminToken();
    // A platform admin provisions a placed tenant for themselves.
    const res = await t.gql(PROVISION, {
      token: admin,
      variables: { input: { name: slug, slug, plan: "PRO", owner: { email: "ops@platform.test" }, placement } },
    });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.provisionTenant.tenant.placement).toBe(placement);
    tenantGid = res.body.data.provisionTenant.tenant.id;
    made.push(placementOf(await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } })));
  });
  afterAll(async () => {
    for (const ref of made) await t?.clients.placements.admin.drop(ref).catch(() => {});
    await t?.close();
    await t?.store.close();
  });

  it("a plan change and a limit set by the platform apply to the tenant's own requests", async () => {
    const plan = await t.gql(`mutation($i: ChangeTenantPlanInput!) { changeTenantPlan(input: $i) { tenant { plan } } }`, {
      token: admin,
      variables: { i: { tenantId: tenantGid, plan: "FREE" } },
    });
    expect(plan.body.errors).toBeUndefined();
    const limits = await t.gql(`mutation($i: SetTenantLimitsInput!) { setTenantLimits(input: $i) { tenant { slug } } }`, {
      token: admin,
      variables: { i: { tenantId: tenantGid, limits: [{ resource: "PROJECTS", limit: 0 }] } },
    });
    expect(limits.body.errors).toBeUndefined();

    const owner = await t.token("ops@platform.test", slug);
    const seen = await t.gql(`{ tenant { plan } }`, { token: owner });
    expect(seen.body.data?.tenant?.plan).toBe("FREE");
    const created = await t.gql(`mutation { createProject(input: { name: "over the limit" }) { project { id } } }`, { token: owner });
    expect(created.body.errors?.[0]?.extensions?.code).toBe("QUOTA_EXCEEDED");
  });

  it("a platform admin demoted in the main database loses platform access through the placed tenant too", async () => {
    const owner = await t.token("ops@platform.test", slug);
    const before = await t.gql(PLATFORM, { token: owner });
    expect(before.body.errors).toBeUndefined();

    await t.clients.platform.user.update({ where: { email: "ops@platform.test" }, data: { isPlatformAdmin: false } });
    try {
      const tenantless = await t.gql(PLATFORM, { token: await t.token("ops@platform.test") });
      const code = tenantless.body.errors?.[0]?.extensions?.code;
      expect(code).toBeDefined();
      const placed = await t.gql(PLATFORM, { token: owner });
      expect(placed.body.data?.platform ?? null).toBeNull();
      expect(placed.body.errors?.[0]?.extensions?.code).toBe(code);
    } finally {
      await t.clients.platform.user.update({ where: { email: "ops@platform.test" }, data: { isPlatformAdmin: true } });
    }
  });
});
