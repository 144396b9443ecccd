import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { Metrics } from "../../src/infra/metrics.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { refreshStorage, StorageRefresher } from "../../src/modules/storage/storage.service.ts";
import { Directory } from "../../src/tenancy/directory.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createReplica, sharedStores, type Gql } from "../helpers/replica.ts";
import type { Store } from "../../src/infra/store.ts";

/**
 * Issue 18 point 5: storage per tenant, measured in the background with
 * pg_column_size and stored; STORAGE_BYTES per plan in the quota table;
 * growing writes refused past it; a per-tenant metric.
 */

const USAGE = `{ usage { plan storageBytes storageLimitBytes } }`;
const CREATE = `mutation($input: CreateProjectInput!) { createProject(input: $input) { project { id } } }`;
const DELETE = `mutation($input: DeleteProjectInput!) { deleteProject(input: $input) { deletedProjectId } }`;
const SET_LIMITS = `mutation($input: SetTenantLimitsInput!) { setTenantLimits(input: $input) { tenant { slug } } }`;

describe("tenant storage", () => {
  let t: TestApp;
  let b: { gql: Gql; close(): Promise<void> };
  let stores: Store[];
  const ids: Record<string, string> = {};

  const stored = async (slug: string) => (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug } })).storageBytes;
  /** The same sum, table by table, independently of the measuring statement. */
  const expectedBytes = async (tenantId: string) => {
    let total = 0;
    for (const table of ["projects", "deployments", "workflows", "memberships", "api_keys", "audit_log", "usage_counters", "tenant_limit_overrides"]) {
      const [row] = await t.clients.platform.$queryRawUnsafe<{ n: number | null }[]>(
        `SELECT sum(pg_column_size(x.*))::float8 AS n FROM "${table}" x WHERE tenant_id = $1::uuid`,
        tenantId,
      );
      total += Number(row?.n ?? 0);
    }
    const [own] = await t.clients.platform.$queryRawUnsafe<{ n: number }[]>(`SELECT sum(pg_column_size(x.*))::float8 AS n FROM tenants x WHERE id = $1::uuid`, tenantId);
    return total + Number(own!.n);
  };

  beforeAll(async () => {
    stores = sharedStores(2);
    t = await createTestApp({ store: stores[0] });
    b = createReplica(t, stores[1]!);
    for (const tn of await t.clients.platform.tenant.findMany()) ids[tn.slug] = tn.id;
  });
  afterAll(async () => {
    await b?.close();
    await t?.close();
    for (const s of stores ?? []) await s.close();
  });

  it("measures every tenant's rows with pg_column_size, stores the result, and is not computed per request", async () => {
    // Unmeasured, whatever ran before: the measurement below is the one that writes the sizes.
    await t.clients.platform.tenant.updateMany({ data: { storageBytes: 0, storageMeasuredAt: null } });
    const r = await refreshStorage(t.clients.platform, { minAgeMs: 0 });
    expect(r.measured).toBe(true);
    expect(r.tenants).toHaveLength(3);
    // Measured then; the tenants row itself changed size with the value, so compare after a second pass.
    await refreshStorage(t.clients.platform, { minAgeMs: 0 });
    for (const slug of ["acme", "globex", "wayne"]) {
      const bytes = await stored(slug);
      expect(bytes).toBeGreaterThan(1000);
      // pg_column_size of a whole row differs by a few header bytes with the
      // plan that formed it (short or 4-byte varlena headers): within 1%.
      const expected = await expectedBytes(ids[slug]!);
      expect(Math.abs(bytes - expected)).toBeLessThanOrEqual(expected * 0.01);
    }
    const before = await stored("acme");
    const dev = await t.memberToken("acme", "DEVELOPER");
    const big = "x".repeat(1500);
    const created = await t.gql(CREATE, { token: dev, variables: { input: { name: "Large", description: big } } });
    expect(created.body.errors).toBeUndefined();
    // Not per request: nothing changed until the next measurement.
    const admin = await t.memberToken("acme", "ADMIN");
    expect((await t.gql(USAGE, { token: admin })).body.data.usage.storageBytes).toBe(before);
    await refreshStorage(t.clients.platform, { minAgeMs: 0 });
    const after = await stored("acme");
    expect(after - before).toBeGreaterThan(1500);
    expect((await b.gql(USAGE, { token: admin })).body.data.usage).toEqual({ plan: "PRO", storageBytes: after, storageLimitBytes: 10 * 1024 ** 3 });
    const free = await t.gql(USAGE, { token: await t.memberToken("globex", "ADMIN") });
    expect(free.body.data.usage.storageLimitBytes).toBe(100 * 1024 ** 2);
    const wayne = await t.gql(USAGE, { token: await t.memberToken("wayne", "ADMIN") });
    expect(wayne.body.data.usage.storageLimitBytes).toBeNull();
    const platform = await t.gql(`{ platform { tenantUsage(first: 10) { edges { node { tenant { slug } storageBytes } } } } }`, { token: await t.adminToken() });
    const acmeStats = platform.body.data.platform.tenantUsage.edges.find((e: any) => e.node.tenant.slug === "acme");
    expect(acmeStats.node.storageBytes).toBe(after);
  });

  it("a measurement bumps no response-cache generation; a feature change does", async () => {
    const generation = async () =>
      (await t.clients.platform.$queryRawUnsafe<{ g: string | null }[]>(`SELECT generation::text AS g FROM tenant_cache_generations WHERE tenant_id = $1::uuid`, ids.acme))[0]?.g ?? null;
    const before = await generation();
    const r = await refreshStorage(t.clients.platform, { minAgeMs: 0 });
    expect(r.measured).toBe(true);
    expect(await generation()).toBe(before);
    await t.clients.platform.tenant.update({ where: { id: ids.acme }, data: { featureOverrides: ["api_access"] } });
    expect(await generation()).not.toBe(before);
    await t.clients.platform.tenant.update({ where: { id: ids.acme }, data: { featureOverrides: Prisma.DbNull } });
  });

  it("runs at most once per interval across replicas", async () => {
    // Sizes measured once before: the runs that do not measure answer with the stored ones.
    await refreshStorage(t.clients.platform, { minAgeMs: 0 });
    await t.clients.platform.tenant.updateMany({ data: { storageMeasuredAt: null } });
    const runs = await Promise.all([0, 1, 2].map(() => refreshStorage(t.clients.platform, { minAgeMs: 60_000 })));
    expect(runs.filter((r) => r.measured)).toHaveLength(1);
    for (const r of runs) expect(r.tenants.find((x) => x.id === ids.acme)?.bytes).toBeGreaterThan(0);
    expect((await refreshStorage(t.clients.platform, { minAgeMs: 60_000 })).measured).toBe(false);
  });

  it("past STORAGE_BYTES, growing writes are QUOTA_EXCEEDED on every replica and nothing is written; deletes stay open", async () => {
    const admin = await t.adminToken();
    const dev = await t.memberToken("globex", "ADMIN");
    try {
      const keep = await t.gql(CREATE, { token: dev, variables: { input: { name: "Keep" } } });
      expect(keep.body.errors).toBeUndefined();
      const setLimit = (limit: number | null) =>
        t.gql(SET_LIMITS, { token: admin, variables: { input: { tenantId: toGlobalId("Tenant", ids.globex!), limits: [{ resource: "STORAGE_BYTES", limit }] } } });
      expect((await setLimit(2000)).body.errors).toBeUndefined();
      await refreshStorage(t.clients.platform, { minAgeMs: 0 });
      const used = await stored("globex");
      expect(used).toBeGreaterThan(2000);
      const projects = await t.clients.platform.project.count({ where: { tenantId: ids.globex } });
      const refused = await b.gql(CREATE, { token: dev, variables: { input: { name: "Refused" } } });
      expect(refused.body.errors?.[0]?.extensions).toEqual(
        expect.objectContaining({ code: "QUOTA_EXCEEDED", resource: "STORAGE_BYTES", limit: 2000, used, requested: 1 }),
      );
      expect(await t.clients.platform.project.count({ where: { tenantId: ids.globex } })).toBe(projects);
      const deleted = await b.gql(DELETE, { token: dev, variables: { input: { id: keep.body.data.createProject.project.id } } });
      expect(deleted.body.errors).toBeUndefined();
      // Unlimited again (null): written.
      expect((await setLimit(null)).body.errors).toBeUndefined();
      expect((await b.gql(CREATE, { token: dev, variables: { input: { name: "Allowed" } } })).body.errors).toBeUndefined();
    } finally {
      // Back to the plan's limit (no override), as the other tests expect of globex.
      await t.clients.platform.tenantLimitOverride.deleteMany({ where: { tenantId: ids.globex } });
      await new Directory(t.clients.platform, stores[0]!).invalidateTenant(ids.globex!, "globex");
    }
  });

  it("a per-tenant metric, from each replica's refresher", async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const refresher = new StorageRefresher({
      platform: t.clients.platform,
      intervalMs: 60_000,
      logger: createLogger("silent"),
      onValues: (v) => metrics.setTenantStorage(v),
    });
    await refresher.tick();
    await refresher.stop();
    const text = await metrics.registry.metrics();
    for (const slug of ["acme", "globex", "wayne"]) {
      expect(text).toContain(`tenantgraph_tenant_storage_bytes{tenant="${ids[slug]}"} ${await stored(slug)}`);
    }
  });
});
