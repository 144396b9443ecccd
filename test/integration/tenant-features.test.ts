import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { hashApiKey } from "../../src/tenancy/credentials.ts";
import { newSecret } from "../../src/modules/api-keys/api-key.service.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createReplica, sharedStores, type Gql } from "../helpers/replica.ts";
import type { Store } from "../../src/infra/store.ts";

/**
 * Issue 18 point 1: plan features declared with @feature and enforced by the
 * policy enforcer; API keys need api_access; setTenantFeatures overrides;
 * plan and feature changes hold on the next request of another replica,
 * and PostgreSQL decides even when the cache says otherwise.
 */

const FEATURES = `{ tenant { slug plan features } }`;
const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }`;
const SET_FEATURES = `mutation($input: SetTenantFeaturesInput!) { setTenantFeatures(input: $input) { tenant { slug features } } }`;
const CHANGE_PLAN = `mutation($input: ChangeTenantPlanInput!) { changeTenantPlan(input: $input) { tenant { plan features } } }`;

describe("plan features", () => {
  let t: TestApp;
  let b: { gql: Gql; close(): Promise<void> };
  let stores: Store[];
  let admin: string;
  const ids: Record<string, string> = {};

  /** A key inserted directly (as one made before a downgrade would be). */
  const insertKey = async (slug: string) => {
    const { secret, prefix } = newSecret();
    await t.clients.platform.apiKey.create({
      data: { tenantId: ids[slug]!, name: `direct ${slug}`, role: "ADMIN", prefix, secretHash: hashApiKey(secret) },
    });
    return secret;
  };
  const keyRequest = (gql: Gql, secret: string) => gql(FEATURES, { headers: { "x-api-key": secret } });

  beforeAll(async () => {
    stores = sharedStores(2);
    t = await createTestApp({ store: stores[0] });
    b = createReplica(t, stores[1]!);
    admin = await t.adminToken();
    for (const tn of await t.clients.platform.tenant.findMany()) ids[tn.slug] = tn.id;
  });
  afterAll(async () => {
    await b?.close();
    await t?.close();
    for (const s of stores ?? []) await s.close();
  });

  it("each plan has its default features", async () => {
    const expected: Record<string, string[]> = {
      globex: [],
      acme: ["api_access", "advanced_analytics"],
      wayne: ["api_access", "advanced_analytics", "sso", "custom_domain"],
    };
    for (const [slug, features] of Object.entries(expected)) {
      const r = await t.gql(FEATURES, { token: await t.memberToken(slug, "VIEWER") });
      expect(r.body.errors).toBeUndefined();
      expect(r.body.data.tenant.features).toEqual(features);
    }
  });

  it("a FREE tenant cannot create API keys: FEATURE_NOT_AVAILABLE with feature and plan, nothing written", async () => {
    // Other tests insert globex keys directly: "nothing written" is nothing more than before.
    const written = async () => [
      await t.clients.platform.apiKey.count({ where: { tenantId: ids.globex } }),
      await t.clients.platform.auditLogEntry.count({ where: { tenantId: ids.globex, action: "apiKey.create" } }),
    ];
    const before = await written();
    const r = await t.gql(CREATE_KEY, { token: await t.memberToken("globex", "ADMIN"), variables: { input: { name: "k", role: "VIEWER" } } });
    expect(r.body.data).toBeNull();
    expect(r.body.errors?.[0]?.extensions).toMatchObject({ code: "FEATURE_NOT_AVAILABLE", feature: "api_access", plan: "FREE" });
    expect(await written()).toEqual(before);
  });

  it("a key of a tenant without api_access is refused (403 FEATURE_NOT_AVAILABLE); one with it is served", async () => {
    const globexKey = await insertKey("globex");
    const r = await keyRequest(t.gql, globexKey);
    expect(r.status).toBe(403);
    expect(r.body.errors?.[0]?.extensions).toMatchObject({ code: "FEATURE_NOT_AVAILABLE", feature: "api_access", plan: "FREE" });
    const acmeKey = await insertKey("acme");
    const ok = await keyRequest(t.gql, acmeKey);
    expect(ok.body.errors).toBeUndefined();
    expect(ok.body.data.tenant.slug).toBe("acme");
  });

  it("setTenantFeatures (platform, audited) grants and withdraws on the next request of another replica", async () => {
    const globexKey = await insertKey("globex");
    const ownerB = await t.memberToken("globex", "ADMIN");
    // Warm replica B's view (and the shared cache) with the FREE answer.
    expect((await keyRequest(b.gql, globexKey)).body.errors?.[0]?.extensions.code).toBe("FEATURE_NOT_AVAILABLE");

    const set = await t.gql(SET_FEATURES, { token: admin, variables: { input: { tenantId: toGlobalId("Tenant", ids.globex!), features: ["api_access"] } } });
    expect(set.body.errors).toBeUndefined();
    expect(set.body.data.setTenantFeatures.tenant.features).toEqual(["api_access"]);
    const entry = await t.clients.platform.platformAuditEntry.findFirst({ where: { action: "tenant.setFeatures" } });
    expect(entry?.tenantIds).toEqual([ids.globex]);
    expect(await t.clients.platform.auditLogEntry.count({ where: { tenantId: ids.globex, action: "tenant.setFeatures", crossTenant: true } })).toBe(1);

    const served = await keyRequest(b.gql, globexKey);
    expect(served.body.errors).toBeUndefined();
    expect(served.body.data.tenant.features).toEqual(["api_access"]);
    const created = await b.gql(CREATE_KEY, { token: ownerB, variables: { input: { name: "now allowed", role: "VIEWER" } } });
    expect(created.body.errors).toBeUndefined();

    // null = back to the plan's (none for FREE).
    const reset = await t.gql(SET_FEATURES, { token: admin, variables: { input: { tenantId: toGlobalId("Tenant", ids.globex!), features: null } } });
    expect(reset.body.data.setTenantFeatures.tenant.features).toEqual([]);
    expect((await keyRequest(b.gql, globexKey)).body.errors?.[0]?.extensions.code).toBe("FEATURE_NOT_AVAILABLE");
    expect((await keyRequest(b.gql, created.body.data.createApiKey.secret)).body.errors?.[0]?.extensions.code).toBe("FEATURE_NOT_AVAILABLE");
  });

  it("a plan change holds on the next request of another replica, both ways", async () => {
    const acmeKey = await insertKey("acme");
    expect((await keyRequest(b.gql, acmeKey)).body.data.tenant.features).toContain("api_access");
    const down = await t.gql(CHANGE_PLAN, { token: admin, variables: { input: { tenantId: toGlobalId("Tenant", ids.acme!), plan: "FREE" } } });
    expect(down.body.data.changeTenantPlan.tenant).toEqual({ plan: "FREE", features: [] });
    const refused = await keyRequest(b.gql, acmeKey);
    expect(refused.body.errors?.[0]?.extensions).toMatchObject({ code: "FEATURE_NOT_AVAILABLE", feature: "api_access", plan: "FREE" });
    const up = await t.gql(CHANGE_PLAN, { token: admin, variables: { input: { tenantId: toGlobalId("Tenant", ids.acme!), plan: "PRO" } } });
    expect(up.body.errors).toBeUndefined();
    expect((await keyRequest(b.gql, acmeKey)).body.errors).toBeUndefined();
  });

  it("PostgreSQL decides: an override written without any invalidation holds on the next request", async () => {
    const wayneKey = await insertKey("wayne");
    expect((await keyRequest(t.gql, wayneKey)).body.data.tenant.features).toHaveLength(4);
    // The cache still says ENTERPRISE features; nobody evicts it.
    await t.clients.platform.tenant.update({ where: { id: ids.wayne }, data: { featureOverrides: ["sso"] } });
    const r = await keyRequest(t.gql, wayneKey);
    expect(r.body.errors?.[0]?.extensions).toMatchObject({ code: "FEATURE_NOT_AVAILABLE", feature: "api_access", plan: "ENTERPRISE" });
    const member = await t.gql(FEATURES, { token: await t.memberToken("wayne", "VIEWER") });
    expect(member.body.data.tenant.features).toEqual(["sso"]);
    await t.clients.platform.tenant.update({ where: { id: ids.wayne }, data: { featureOverrides: Prisma.DbNull } });
  });

  it("setTenantFeatures: unknown names are BAD_USER_INPUT naming the entry; tenant members are FORBIDDEN", async () => {
    const bad = await t.gql(SET_FEATURES, {
      token: admin,
      variables: { input: { tenantId: toGlobalId("Tenant", ids.globex!), features: ["sso", "teleport"] } },
    });
    expect(bad.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "features[1]" });
    const owner = await t.gql(SET_FEATURES, {
      token: await t.memberToken("globex", "OWNER"),
      variables: { input: { tenantId: toGlobalId("Tenant", ids.globex!), features: ["sso"] } },
    });
    expect(owner.body.errors?.[0]?.extensions).toMatchObject({ code: "FORBIDDEN", requires: "PLATFORM_ADMIN" });
    const row = await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: ids.globex } });
    expect(row.featureOverrides).toBeNull();
  });
});
