import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { PLAN_STATEMENT_TIMEOUT_MS } from "../../src/tenancy/plans.ts";
import { isStatementTimeout } from "../../src/policy/query-timeout.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * Noisy neighbours: a FREE tenant's statement is cancelled after 5 s (its
 * plan's statement_timeout, set per transaction) with the coded error
 * QUERY_TIMEOUT, while another tenant's requests carry on meanwhile.
 */

describe("per-plan statement_timeout", () => {
  let t: TestApp;
  const store = isolatedStore();
  const tenants: Record<string, { id: string; plan: "FREE" | "PRO" | "ENTERPRISE" }> = {};
  const tenantDb = (slug: string) =>
    new TenantDb(t.clients.app, { tenantId: tenants[slug]!.id, statementTimeoutMs: PLAN_STATEMENT_TIMEOUT_MS[tenants[slug]!.plan], mode: "statement" });

  beforeAll(async () => {
    t = await createTestApp({ store });
    for (const row of await t.clients.platform.tenant.findMany()) tenants[row.slug] = { id: row.id, plan: row.plan };
  });
  afterAll(async () => {
    await t?.close();
    await store.close();
  });

  /** Requests of acme (PRO) while `slow` runs: each must answer quickly. */
  async function neighbourWhile(slow: Promise<unknown>) {
    const token = await t.memberToken("acme", "DEVELOPER");
    let done = false;
    void slow.finally(() => (done = true)).catch(() => {});
    const latencies: number[] = [];
    await new Promise((r) => setTimeout(r, 300));
    while (!done) {
      const start = performance.now();
      const res = await t.gql(`{ projects(first: 5) { totalCount edges { node { name deploymentCount } } } }`, { token });
      latencies.push(performance.now() - start);
      expect(res.body.errors).toBeUndefined();
      await new Promise((r) => setTimeout(r, 100));
    }
    return latencies;
  }

  it("each plan's transaction carries its timeout", async () => {
    const show = async (slug: string) =>
      (await tenantDb(slug).queryRaw<{ statement_timeout: string }>(Prisma.sql`SHOW statement_timeout`))[0]!.statement_timeout;
    expect(await show("globex")).toBe("5s");
    expect(await show("acme")).toBe("30s");
    expect(await show("wayne")).toBe("0");
  });

  it("cancels a FREE tenant's slow statement at 5 s while another tenant proceeds", async () => {
    const start = Date.now();
    const slow = tenantDb("globex").queryRaw(Prisma.sql`SELECT pg_sleep(6)`);
    const [outcome, latencies] = await Promise.all([slow.then(() => null, (e: unknown) => e), neighbourWhile(slow)]);
    const elapsed = Date.now() - start;
    expect(isStatementTimeout(outcome)).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(4_900);
    expect(elapsed).toBeLessThan(5_900);
    expect(latencies.length).toBeGreaterThan(5);
    expect(Math.max(...latencies)).toBeLessThan(1_500);
  });

  it("answers the GraphQL request with QUERY_TIMEOUT, not a masked error", async () => {
    // A row lock held elsewhere makes globex's update wait: the wait counts
    // against its 5 s, like a slow query would.
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenantId: tenants.globex!.id } });
    const locker = new pg.Client({ connectionString: t.db.url });
    await locker.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("SELECT id FROM projects WHERE tenant_id = $1 AND id = $2 FOR UPDATE", [project.tenantId, project.id]);
      const token = await t.memberToken("globex", "DEVELOPER");
      const start = Date.now();
      const slow = t.gql(`mutation($i: UpdateProjectInput!) { updateProject(input: $i) { project { name } } }`, {
        token,
        variables: { i: { id: Buffer.from(`Project:${project.id}`).toString("base64"), name: "Renamed" } },
      });
      const [res, latencies] = await Promise.all([slow, neighbourWhile(slow)]);
      expect(Date.now() - start).toBeGreaterThanOrEqual(4_900);
      expect(res.body.errors?.[0].extensions).toEqual({ code: "QUERY_TIMEOUT" });
      expect(res.body.errors?.[0].message).not.toMatch(/statement|pg_|SQL|prisma/i);
      expect(Math.max(...latencies)).toBeLessThan(1_500);
    } finally {
      await locker.query("ROLLBACK").catch(() => {});
      await locker.end();
    }
    expect((await t.clients.platform.project.findFirstOrThrow({ where: { id: project.id } })).name).toBe(project.name);
  });
});
