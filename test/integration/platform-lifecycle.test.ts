import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createApp, type App } from "../../src/app.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { RedisStore, type Store } from "../../src/infra/store.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTokenVerifier, hashApiKey } from "../../src/tenancy/credentials.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { createTestApp, TEST_JWT_SECRET, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * Issue 6 point 4: the tenant lifecycle. Every change is made through one
 * app ("replica A") and observed on the next request through another
 * ("replica B": its own Directory and, with REDIS_URL, its own Redis
 * connection; both share the database and the store as replicas do).
 */

const VIEWER = `{ viewer { tenant { slug plan status } role } }`;
/** API keys have no viewer (no user): they read the tenant. */
const KEY_QUERY = `{ tenant { slug status } }`;

describe("tenant lifecycle", () => {
  let t: TestApp;
  let replicaB: App;
  let storeB: Store;
  let admin: string;

  const gqlOn = async (app: App, query: string, opts: { token?: string; headers?: Record<string, string>; variables?: unknown } = {}) => {
    const res = await app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...opts.headers },
      body: JSON.stringify({ query, variables: opts.variables }),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as { data?: any; errors?: any[] } };
  };

  const tenantGid = async (slug: string) =>
    toGlobalId("Tenant", (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } })).id);

  beforeAll(async () => {
    const store = isolatedStore();
    t = await createTestApp({ store });
    admin = await t.adminToken();
    // Replica B: same database and store contents, its own connections and directory.
    storeB = store.kind === "redis" ? store : store;
    replicaB = createApp({
      app: t.clients.app,
      platform: t.clients.platform,
      store: storeB,
      directory: new Directory(t.clients.platform, storeB),
      verifyToken: createTokenVerifier({ jwtSecret: TEST_JWT_SECRET, jwtIssuer: undefined, jwtAudience: undefined, jwksUrl: undefined }),
      baseDomain: "localhost",
      config: { graphiql: false, introspection: true, maxBodyBytes: 1 << 20, jwtSecret: TEST_JWT_SECRET, production: false },
      logger: createLogger("silent"),
      probes: {},
    });
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  it("suspendTenant: members and API keys get TENANT_SUSPENDED on the next request, on the other replica too; reactivate restores", async () => {
    const secret = `tg_${randomBytes(24).toString("hex")}`;
    // globex is FREE: its keys need the api_access feature (docs/tenant-config.md).
    const globex = await t.clients.platform.tenant.update({ where: { slug: "globex" }, data: { featureOverrides: ["api_access"] } });
    await t.clients.platform.apiKey.create({
      data: { tenantId: globex.id, name: "k", role: "VIEWER", prefix: secret.slice(0, 10), secretHash: hashApiKey(secret) },
    });
    const member = await t.memberToken("globex", "DEVELOPER");
    // Warm both replicas' caches.
    expect((await gqlOn(replicaB, VIEWER, { token: member })).body.data.viewer.tenant.status).toBe("ACTIVE");
    expect((await gqlOn(replicaB, KEY_QUERY, { headers: { "x-api-key": secret } })).body.errors).toBeUndefined();

    const res = await t.gql(`mutation S($id: ID!) { suspendTenant(input: { tenantId: $id, reason: "unpaid invoice" }) { tenant { slug status } } }`, {
      token: admin,
      variables: { id: toGlobalId("Tenant", globex.id) },
    });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.suspendTenant.tenant).toEqual({ slug: "globex", status: "SUSPENDED" });
    expect((await t.clients.platform.tenant.findUniqueOrThrow({ where: { id: globex.id } })).suspendedReason).toBe("unpaid invoice");

    for (const call of [gqlOn(replicaB, VIEWER, { token: member }), gqlOn(replicaB, KEY_QUERY, { headers: { "x-api-key": secret } }), t.gql(VIEWER, { token: member })]) {
      const r = await call;
      expect(r.body.errors?.[0]?.extensions?.code).toBe("TENANT_SUSPENDED");
    }

    const back = await t.gql(`mutation R($id: ID!) { reactivateTenant(input: { tenantId: $id }) { tenant { status } } }`, {
      token: admin,
      variables: { id: toGlobalId("Tenant", globex.id) },
    });
    expect(back.body.data.reactivateTenant.tenant.status).toBe("ACTIVE");
    expect((await gqlOn(replicaB, VIEWER, { token: member })).body.data.viewer.tenant.status).toBe("ACTIVE");
  });

  it("changeTenantPlan: the new plan's limits apply on the next request, on the other replica", async () => {
    const member = await t.memberToken("globex", "VIEWER");
    const before = await gqlOn(replicaB, VIEWER, { token: member });
    expect(before.headers.get("x-ratelimit-limit")).toBe("100");
    const res = await t.gql(`mutation P($id: ID!) { changeTenantPlan(input: { tenantId: $id, plan: ENTERPRISE }) { tenant { plan } } }`, {
      token: admin,
      variables: { id: await tenantGid("globex") },
    });
    expect(res.body.data.changeTenantPlan.tenant.plan).toBe("ENTERPRISE");
    const after = await gqlOn(replicaB, VIEWER, { token: member });
    expect(after.body.data.viewer.tenant.plan).toBe("ENTERPRISE");
    expect(after.headers.get("x-ratelimit-limit")).toBe("10000");
  });

  it("setTenantLimits: per-tenant overrides apply on the next request; null = unlimited", async () => {
    const member = await t.memberToken("wayne", "VIEWER");
    const id = await tenantGid("wayne");
    const set = (limit: number | null) =>
      t.gql(`mutation L($id: ID!, $limit: Int) { setTenantLimits(input: { tenantId: $id, limits: [{ resource: API_REQUESTS_PER_MINUTE, limit: $limit }] }) { tenant { slug } } }`, {
        token: admin,
        variables: { id, limit },
      });
    expect((await set(1_000_000)).body.errors).toBeUndefined();
    expect((await gqlOn(replicaB, VIEWER, { token: member })).headers.get("x-ratelimit-limit")).toBe("1000000");
    expect((await set(null)).body.errors).toBeUndefined();
    const unlimited = await gqlOn(replicaB, VIEWER, { token: member });
    expect(unlimited.body.errors).toBeUndefined();
    expect(unlimited.headers.get("x-ratelimit-limit")).toBeNull();
    const rows = await t.clients.platform.tenantLimitOverride.findMany({ where: { tenant: { slug: "wayne" } } });
    expect(rows).toEqual([expect.objectContaining({ resource: "API_REQUESTS_PER_MINUTE", limit: null })]);
    // A negative limit is the caller's mistake.
    const bad = await set(-1);
    expect(bad.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "limits[0].limit" });
  });

  it("an unknown or malformed tenant id: NOT_FOUND / BAD_USER_INPUT, nothing written", async () => {
    const unknown = await t.gql(`mutation { reactivateTenant(input: { tenantId: "${toGlobalId("Tenant", "0b7f0c5e-9d2a-4c1e-8f00-000000000001")}" }) { tenant { slug } } }`, { token: admin });
    expect(unknown.body.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    const wrongType = await t.gql(`mutation { reactivateTenant(input: { tenantId: "${toGlobalId("Project", "0b7f0c5e-9d2a-4c1e-8f00-000000000001")}" }) { tenant { slug } } }`, { token: admin });
    expect(wrongType.body.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
  });

  it("provisionTenant: region and initial limits, owner can sign in at once; a bad region is BAD_USER_INPUT", async () => {
    const res = await t.gql(
      `mutation { provisionTenant(input: { name: "Initech", slug: "initech", plan: PRO, region: "us-east-1",
          limits: [{ resource: PROJECTS, limit: 7 }], owner: { email: "Bill@Initech.test", name: "Bill" } }) {
          tenant { slug plan status region } owner { email } } }`,
      { token: admin },
    );
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.provisionTenant).toEqual({
      tenant: { slug: "initech", plan: "PRO", status: "ACTIVE", region: "us-east-1" },
      owner: { email: "bill@initech.test" },
    });
    const owner = await gqlOn(replicaB, VIEWER, { token: await t.token("bill@initech.test", "initech") });
    expect(owner.body.data.viewer).toEqual({ tenant: { slug: "initech", plan: "PRO", status: "ACTIVE" }, role: "OWNER" });
    const limits = await t.clients.platform.tenantLimitOverride.findMany({ where: { tenant: { slug: "initech" } } });
    expect(limits).toEqual([expect.objectContaining({ resource: "PROJECTS", limit: 7 })]);
    const defaults = await t.gql(`mutation { provisionTenant(input: { name: "Hooli", slug: "hooli", plan: FREE, owner: { email: "gavin@hooli.test" } }) { tenant { region } } }`, { token: admin });
    expect(defaults.body.data.provisionTenant.tenant.region).toBe("eu-west-1");
    const bad = await t.gql(`mutation { provisionTenant(input: { name: "X", slug: "xx-bad", plan: FREE, region: "Mars; DROP", owner: { email: "x@x.test" } }) { tenant { slug } } }`, { token: admin });
    expect(bad.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "region" });
    expect(await t.clients.platform.tenant.count({ where: { slug: "xx-bad" } })).toBe(0);
  });

  describe("deletion", () => {
    let victimId: string;
    let ownerToken: string;
    let keySecret: string;
    let slug: string;
    let victims = 0;

    // A tenant of its own for each test (ACTIVE, with rows in every tenant table and cache entries).
    beforeEach(async () => {
      slug = `doomed-${++victims}`;
      const res = await t.gql(`mutation { provisionTenant(input: { name: "Doomed", slug: "${slug}", plan: PRO, owner: { email: "owner@${slug}.test" } }) { tenant { id } } }`, { token: admin });
      expect(res.body.errors).toBeUndefined();
      victimId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } })).id;
      ownerToken = await t.token(`owner@${slug}.test`, slug);
      // Data in every tenant table, through the API where it exists and the owner client otherwise.
      const p = await t.gql(`mutation { createProject(input: { name: "Site" }) { project { id } } }`, { token: ownerToken });
      expect(p.body.errors).toBeUndefined();
      const projectId = p.body.data.createProject.project.id;
      const d = await t.gql(`mutation D($p: ID!) { createDeployment(input: { projectId: $p, branch: "main" }) { deployment { id } } }`, {
        token: ownerToken,
        variables: { p: projectId },
      });
      expect(d.body.errors).toBeUndefined();
      keySecret = `tg_${randomBytes(24).toString("hex")}`;
      const owner = new pg.Client({ connectionString: t.db.url });
      await owner.connect();
      try {
        await owner.query(`INSERT INTO workflows (tenant_id, name) VALUES ($1, 'wf')`, [victimId]);
        await owner.query(`INSERT INTO api_keys (tenant_id, name, role, prefix, secret_hash) VALUES ($1, 'k', 'ADMIN', $2, $3)`, [
          victimId,
          keySecret.slice(0, 10),
          hashApiKey(keySecret),
        ]);
        await owner.query(`INSERT INTO usage_counters (tenant_id, resource, window_start, count) VALUES ($1, 'API_REQUESTS_PER_MINUTE', date_trunc('hour', now()), 5)`, [victimId]);
        await owner.query(`INSERT INTO tenant_limit_overrides (tenant_id, resource, "limit") VALUES ($1, 'SEATS', 3)`, [victimId]);
      } finally {
        await owner.end();
      }
      // The API key works and leaves cache entries behind.
      expect((await gqlOn(replicaB, KEY_QUERY, { headers: { "x-api-key": keySecret } })).body.errors).toBeUndefined();
    });

    it("purgeTenant refuses a tenant that is not PENDING_DELETION", async () => {
      const res = await t.gql(`mutation P($id: ID!) { purgeTenant(input: { tenantId: $id }) { purgedTenantId } }`, {
        token: admin,
        variables: { id: toGlobalId("Tenant", victimId) },
      });
      expect(res.body.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
      expect(await t.clients.platform.project.count({ where: { tenantId: victimId } })).toBe(1);
    });

    it("scheduleTenantDeletion blocks members and keys with TENANT_SUSPENDED", async () => {
      const res = await t.gql(`mutation S($id: ID!) { scheduleTenantDeletion(input: { tenantId: $id }) { tenant { status } } }`, {
        token: admin,
        variables: { id: toGlobalId("Tenant", victimId) },
      });
      expect(res.body.data.scheduleTenantDeletion.tenant.status).toBe("PENDING_DELETION");
      expect((await gqlOn(replicaB, VIEWER, { token: ownerToken })).body.errors?.[0]?.extensions?.code).toBe("TENANT_SUSPENDED");
      expect((await gqlOn(replicaB, KEY_QUERY, { headers: { "x-api-key": keySecret } })).body.errors?.[0]?.extensions?.code).toBe("TENANT_SUSPENDED");
    });

    it("purgeTenant removes every row of the tenant, every store key t:{id}:*, and the slug resolves to nothing", async () => {
      const scheduled = await t.gql(`mutation S($id: ID!) { scheduleTenantDeletion(input: { tenantId: $id }) { tenant { status } } }`, {
        token: admin,
        variables: { id: toGlobalId("Tenant", victimId) },
      });
      expect(scheduled.body.data.scheduleTenantDeletion.tenant.status).toBe("PENDING_DELETION");
      const res = await t.gql(`mutation P($id: ID!) { purgeTenant(input: { tenantId: $id }) { purgedTenantId } }`, {
        token: admin,
        variables: { id: toGlobalId("Tenant", victimId) },
      });
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data.purgeTenant.purgedTenantId).toBe(toGlobalId("Tenant", victimId));

      // Every table with a tenant_id column (found in the catalog, so a table added later is checked too).
      const owner = new pg.Client({ connectionString: t.db.url });
      await owner.connect();
      try {
        const { rows: tables } = await owner.query(
          `SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() AND column_name = 'tenant_id'`,
        );
        expect(tables.length).toBeGreaterThanOrEqual(8);
        for (const { table_name } of tables) {
          const { rows } = await owner.query(`SELECT count(*)::int AS n FROM "${table_name}" WHERE tenant_id = $1`, [victimId]);
          expect(rows[0].n, table_name).toBe(0);
        }
        expect((await owner.query(`SELECT count(*)::int AS n FROM tenants WHERE id = $1`, [victimId])).rows[0].n).toBe(0);
        // The platform audit log keeps the record of the purge.
        const { rows: audit } = await owner.query(`SELECT action FROM platform_audit_log WHERE $1 = ANY(tenant_ids) AND action = 'tenant.purge'`, [victimId]);
        expect(audit).toHaveLength(1);
      } finally {
        await owner.end();
      }

      if (process.env.REDIS_URL) {
        const probe = new RedisStore(process.env.REDIS_URL);
        try {
          const keys: string[] = [];
          let cursor = "0";
          do {
            const [next, batch] = await probe.redis.scan(cursor, "MATCH", `*t:{${victimId}}:*`, "COUNT", 1000);
            cursor = next;
            keys.push(...batch);
          } while (cursor !== "0");
          expect(keys).toEqual([]);
        } finally {
          await probe.close();
        }
      } else {
        expect(await t.store.deletePattern(`t:{${victimId}}:*`)).toBe(0);
      }

      // The slug resolves to nothing, the key and the owner's token are refused.
      const viaSlug = await gqlOn(replicaB, VIEWER, { token: ownerToken });
      expect(viaSlug.body.errors?.[0]?.extensions?.code).toBe("TENANT_ACCESS_DENIED");
      const viaKey = await gqlOn(replicaB, KEY_QUERY, { headers: { "x-api-key": keySecret } });
      expect(viaKey.body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
      const list = await t.gql(`query L($s: String!) { platform { tenants(first: 50, filter: { search: $s }) { totalCount } } }`, { token: admin, variables: { s: slug } });
      expect(list.body.data.platform.tenants.totalCount).toBe(0);
      // The slug is free again.
      const again = await t.gql(`mutation { provisionTenant(input: { name: "Doomed 2", slug: "${slug}", plan: FREE, owner: { email: "owner@${slug}.test" } }) { tenant { slug } } }`, { token: admin });
      expect(again.body.errors).toBeUndefined();
    });
  });
});
