import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { createApp, type App } from "../../src/app.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { newSecret } from "../../src/modules/api-keys/api-key.service.ts";
import { createTestApp, testAppDeps, type TestApp } from "../helpers/app.ts";
import { createTestClients } from "../helpers/db.ts";
import { sharedStores } from "../helpers/replica.ts";
import type { Store } from "../../src/infra/store.ts";

/**
 * Issue 18 point 4: custom domains. A request whose Host is a tenant's
 * domain is that tenant's (SPEC order: tid, issuer, X-Tenant-ID, domain,
 * subdomain; conflicts refused); a removal holds on the next request of the
 * other replica, PostgreSQL deciding over the cache.
 */

const TENANT = `{ tenant { slug domain } }`;
const SET_DOMAIN = `mutation($input: SetTenantDomainInput!) { setTenantDomain(input: $input) { tenant { slug domain } } }`;
const DOMAIN = "api.wayne-corp.example";

describe("custom domains", () => {
  let t: TestApp;
  let stores: Store[];
  const apps: { app: App; close(): Promise<void> }[] = [];
  const ids: Record<string, string> = {};
  let admin: string;
  /** A global token without tid: the host must name the tenant. */
  let wayneDev: string;

  const onHost = async (i: number, host: string, query: string, opts: { token?: string; headers?: Record<string, string> } = {}) => {
    const res = await apps[i]!.app.fetch(`http://${host}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", host, ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...opts.headers },
      body: JSON.stringify({ query }),
    });
    return { status: res.status, body: (await res.json()) as { data?: any; errors?: any[] } };
  };
  const codeOf = (r: { body: { errors?: any[] } }) => r.body.errors?.[0]?.extensions?.code;
  const setDomain = (slug: string, domain: string | null) =>
    t.gql(SET_DOMAIN, { token: admin, variables: { input: { tenantId: toGlobalId("Tenant", ids[slug]!), domain } } });

  beforeAll(async () => {
    stores = sharedStores(2);
    t = await createTestApp({ store: stores[0] });
    for (const tn of await t.clients.platform.tenant.findMany()) ids[tn.slug] = tn.id;
    admin = await t.adminToken();
    wayneDev = await t.token("developer@wayne.test");
    for (const store of stores) {
      const clients = createTestClients(t.db.url);
      apps.push({ app: createApp(testAppDeps(clients, store)), close: () => clients.close() });
    }
  });
  /** A tenant's domain and feature overrides written in PostgreSQL, its cached entries evicted. */
  const putTenant = async (slug: string, data: { domain?: string | null; featureOverrides?: string[] | typeof Prisma.DbNull }) => {
    const before = await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: ids[slug] } });
    await t.clients.platform.tenant.update({ where: { id: ids[slug] }, data });
    const directory = new Directory(t.clients.platform, stores[0]!);
    await directory.invalidateTenant(before.id, before.slug);
    await directory.invalidateDomain(before.domain, data.domain);
  };
  // Every test starts from one state: wayne (ENTERPRISE) serves DOMAIN, acme and
  // globex have no domain, no tenant has a feature override.
  beforeEach(async () => {
    await putTenant("acme", { domain: null, featureOverrides: Prisma.DbNull });
    await putTenant("globex", { domain: null, featureOverrides: Prisma.DbNull });
    await putTenant("wayne", { domain: DOMAIN, featureOverrides: Prisma.DbNull });
  });
  afterAll(async () => {
    for (const a of apps) await a.close();
    await t?.close();
    for (const s of stores ?? []) await s.close();
  });

  it("a platform admin assigns a domain (audited, lower-cased); its Host names the tenant on every replica", async () => {
    await putTenant("wayne", { domain: null });
    const audited = { tenantId: ids.wayne, action: "tenant.setDomain", crossTenant: true };
    const before = await t.clients.platform.auditLogEntry.count({ where: audited });
    // Before: an unknown host names no tenant.
    expect(codeOf(await onHost(1, DOMAIN, TENANT, { token: wayneDev }))).toBe("TENANT_REQUIRED");
    const r = await setDomain("wayne", "API.Wayne-Corp.example");
    expect(r.body.errors).toBeUndefined();
    expect(r.body.data.setTenantDomain.tenant).toEqual({ slug: "wayne", domain: DOMAIN });
    expect(await t.clients.platform.auditLogEntry.count({ where: audited })).toBe(before + 1);
    for (const i of [0, 1]) {
      const served = await onHost(i, DOMAIN, TENANT, { token: wayneDev });
      expect(served.body.errors).toBeUndefined();
      expect(served.body.data.tenant).toEqual({ slug: "wayne", domain: DOMAIN });
      // With a port, and agreeing with X-Tenant-ID.
      expect((await onHost(i, `${DOMAIN}:8443`, TENANT, { token: wayneDev, headers: { "x-tenant-id": "wayne" } })).body.data.tenant.slug).toBe("wayne");
    }
  });

  it("a domain naming another tenant than tid, X-Tenant-ID or an API key is refused", async () => {
    const acmeOwner = await t.memberToken("acme", "OWNER");
    const tid = await onHost(0, DOMAIN, TENANT, { token: acmeOwner });
    expect([tid.status, codeOf(tid)]).toEqual([403, "TENANT_ACCESS_DENIED"]);
    const header = await onHost(0, DOMAIN, TENANT, { token: wayneDev, headers: { "x-tenant-id": "acme" } });
    expect(codeOf(header)).toBe("TENANT_ACCESS_DENIED");
    const { secret, prefix, secretHash } = newSecret();
    await t.clients.platform.apiKey.create({ data: { tenantId: ids.acme!, name: "acme key", role: "VIEWER", prefix, secretHash } });
    const key = await onHost(0, DOMAIN, TENANT, { headers: { "x-api-key": secret } });
    expect(codeOf(key)).toBe("TENANT_ACCESS_DENIED");
    expect(key.body.data ?? null).toBeNull();
  });

  it("needs custom_domain; a domain is one tenant's; bad domains are BAD_USER_INPUT", async () => {
    const pro = await setDomain("acme", "acme.example.com");
    expect(pro.body.errors?.[0]?.extensions).toMatchObject({ code: "FEATURE_NOT_AVAILABLE", feature: "custom_domain", plan: "PRO" });
    await t.clients.platform.tenant.update({ where: { id: ids.acme }, data: { featureOverrides: ["custom_domain"] } });
    const taken = await setDomain("acme", DOMAIN);
    expect(taken.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "domain" });
    expect(JSON.stringify(taken.body)).not.toMatch(/constraint|duplicate|wayne/i);
    for (const bad of ["https://acme.example.com", "acme.example.com:443", "acme", "tenant.localhost", "a b.example.com"]) {
      const r = await setDomain("acme", bad);
      expect([bad, r.body.errors?.[0]?.extensions]).toEqual([bad, expect.objectContaining({ code: "BAD_USER_INPUT", field: "domain" })]);
    }
    expect((await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: ids.acme } })).domain).toBeNull();
    const member = await t.gql(SET_DOMAIN, {
      token: await t.memberToken("wayne", "OWNER"),
      variables: { input: { tenantId: toGlobalId("Tenant", ids.wayne!), domain: "other.example.com" } },
    });
    expect(member.body.errors?.[0]?.extensions).toMatchObject({ code: "FORBIDDEN", requires: "PLATFORM_ADMIN" });
  });

  it("a downgrade without custom_domain refuses the domain on the next request (403 FEATURE_NOT_AVAILABLE)", async () => {
    await t.clients.platform.tenant.update({ where: { id: ids.wayne }, data: { featureOverrides: ["sso"] } });
    const r = await onHost(1, DOMAIN, TENANT, { token: wayneDev });
    expect([r.status, r.body.errors?.[0]?.extensions]).toEqual([403, expect.objectContaining({ code: "FEATURE_NOT_AVAILABLE", feature: "custom_domain" })]);
    await t.clients.platform.tenant.update({ where: { id: ids.wayne }, data: { featureOverrides: ["sso", "custom_domain"] } });
    expect((await onHost(1, DOMAIN, TENANT, { token: wayneDev })).body.data.tenant.slug).toBe("wayne");
  });

  it("a removal holds on the next request everywhere, even with the cache still naming the tenant", async () => {
    expect((await onHost(1, DOMAIN, TENANT, { token: wayneDev })).body.data.tenant.slug).toBe("wayne");
    // Removed in PostgreSQL without any eviction: the cached domain is refused.
    await t.clients.platform.tenant.update({ where: { id: ids.wayne }, data: { domain: null } });
    const stale = await onHost(1, DOMAIN, TENANT, { token: wayneDev });
    expect([stale.status, codeOf(stale)]).toEqual([403, "TENANT_ACCESS_DENIED"]);
    // That refusal evicted the entry: the host names nobody now.
    expect(codeOf(await onHost(1, DOMAIN, TENANT, { token: wayneDev }))).toBe("TENANT_REQUIRED");

    // Assigned again, then removed through the API on replica A: replica B follows at once.
    expect((await setDomain("wayne", DOMAIN)).body.errors).toBeUndefined();
    expect((await onHost(1, DOMAIN, TENANT, { token: wayneDev })).body.data.tenant.slug).toBe("wayne");
    const removed = await setDomain("wayne", null);
    expect(removed.body.data.setTenantDomain.tenant.domain).toBeNull();
    for (const i of [0, 1]) expect(codeOf(await onHost(i, DOMAIN, TENANT, { token: wayneDev }))).toBe("TENANT_REQUIRED");
    // Now free for another tenant (one with custom_domain).
    await putTenant("acme", { featureOverrides: ["custom_domain"] });
    expect((await setDomain("acme", DOMAIN)).body.data.setTenantDomain.tenant.domain).toBe(DOMAIN);
    expect((await onHost(1, DOMAIN, TENANT, { token: await t.token("owner@acme.test") })).body.data.tenant.slug).toBe("acme");
  });
});
