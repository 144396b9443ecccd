import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { PLAN_STATEMENT_TIMEOUT_MS } from "../../src/tenancy/plans.ts";
import { isStatementTimeout } from "../../src/infra/query-timeout.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";

/**
 * Noisy neighbours: a tenant's statement is cancelled at its plan's
 * statement_timeout (set per transaction), the GraphQL answer carries the
 * coded error QUERY_TIMEOUT, and another tenant's requests carry on
 * meanwhile. Asserted by what happened (SQLSTATE 57014, the error code,
 * requests that completed), never by how long it took. The slow statements
 * wait for a lock the test holds for longer than the test lasts: only their
 * timeout can end them.
 */

let lockKey = 0x5eed_0000 + (process.pid % 10_000) * 16;

/** Holds an advisory lock on a connection of its own until `fn` ends; `fn` gets the statement that waits for it. */
async function whileLockHeld<T>(url: string, fn: (waiting: Prisma.Sql) => Promise<T>): Promise<T> {
  const key = ++lockKey;
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  try {
    await holder.query("SELECT pg_advisory_lock($1)", [key]);
    return await fn(Prisma.sql`SELECT pg_advisory_xact_lock(${key}::bigint)`);
  } finally {
    await holder.end();
  }
}

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

  /**
   * Requests of wayne (ENTERPRISE), one after another, while `slow` runs: how
   * many completed before it ended, up to `enough` (more would prove nothing
   * more, and a closed loop for the whole timeout only burns the cores).
   */
  async function neighbourWhile(slow: Promise<unknown>, enough = 3) {
    const token = await t.memberToken("wayne", "DEVELOPER");
    let done = false;
    void slow.finally(() => (done = true)).catch(() => {});
    let completed = 0;
    while (!done && completed < enough) {
      const res = await t.gql(`{ projects(first: 5) { totalCount edges { node { name deploymentCount } } } }`, { token });
      expect(res.body.errors).toBeUndefined();
      if (!done) completed++;
    }
    return completed;
  }

  it("each plan's transaction carries its timeout", async () => {
    const show = async (slug: string) =>
      (await tenantDb(slug).queryRaw<{ statement_timeout: string }>(Prisma.sql`SHOW statement_timeout`))[0]!.statement_timeout;
    expect(await show("globex")).toBe("5s");
    expect(await show("acme")).toBe("30s");
    expect(await show("wayne")).toBe("0");
  });

  it("recognises the cancellation by its SQLSTATE, whatever the timeout", async () => {
    const db = new TenantDb(t.clients.app, { tenantId: tenants.acme!.id, statementTimeoutMs: 50, mode: "statement" });
    const outcome = await whileLockHeld(t.db.url, (waiting) => db.queryRaw(waiting).then(() => null, (e: unknown) => e));
    expect(isStatementTimeout(outcome)).toBe(true);
    // The plain statement of the same tenant, under no timeout, is not one.
    const fine = await tenantDb("wayne").queryRaw(Prisma.sql`SELECT 1 AS one`).then(() => null, (e: unknown) => e);
    expect(isStatementTimeout(fine)).toBe(false);
    expect(isStatementTimeout(new Error("connection refused"))).toBe(false);
  });

  // The two that wait for globex's 5 s timeout wait together (independent: a
  // statement of their own, a row lock of their own).
  describe.concurrent("at the FREE plan's 5 s", () => {
    it("cancels a FREE tenant's statement that outlasts its plan's timeout (SQLSTATE 57014) while another tenant proceeds", async () => {
      // The lock is held until the test ends: only the 5 s statement_timeout
      // (the plan's, as the test above shows) can end the wait.
      const [outcome, completed] = await whileLockHeld(t.db.url, (waiting) => {
        const slow = tenantDb("globex").queryRaw(waiting);
        return Promise.all([slow.then(() => null, (e: unknown) => e), neighbourWhile(slow)]);
      });
      expect(isStatementTimeout(outcome)).toBe(true);
      expect(outcome).not.toBeNull();
      expect(completed).toBeGreaterThan(0);
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
        const slow = t.gql(`mutation($i: UpdateProjectInput!) { updateProject(input: $i) { project { name } } }`, {
          token,
          variables: { i: { id: Buffer.from(`Project:${project.id}`).toString("base64"), name: "Renamed" } },
        });
        const [res, completed] = await Promise.all([slow, neighbourWhile(slow)]);
        expect(res.body.errors?.[0].extensions).toEqual({ code: "QUERY_TIMEOUT" });
        expect(res.body.errors?.[0].message).not.toMatch(/statement|pg_|SQL|prisma/i);
        expect(completed).toBeGreaterThan(0);
      } finally {
        await locker.query("ROLLBACK").catch(() => {});
        await locker.end();
      }
      expect((await t.clients.platform.project.findFirstOrThrow({ where: { id: project.id } })).name).toBe(project.name);
    });
  });
});
