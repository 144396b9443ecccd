import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createSqlCounter, messagesOf, ofPool, type SqlCounter } from "../helpers/sql-counter.ts";

/**
 * PostgreSQL messages per request (docs/request-path.md, "The last
 * statement"; docs/performance.md, "Fourth round"): a read's last statement
 * carries its COMMIT (one message, one Sync), and anything after it runs in
 * a transaction of its own whose facts are read again and must still admit
 * the request. (The dashboard's 2 messages: sql-count.test.ts.)
 */

describe("PostgreSQL messages per request", () => {
  let t: TestApp;
  let counter: SqlCounter;
  let acmeId: string;

  beforeAll(async () => {
    t = await createTestApp();
    acmeId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
    counter = createSqlCounter({ app: Object.values(t.clients.appPools) });
  });
  afterAll(async () => {
    counter?.detach();
    await t?.close();
  });

  /** A member of acme of its own (removed by a test). */
  async function newMember() {
    const email = `msg-${randomBytes(4).toString("hex")}@acme.test`;
    const user = await t.clients.platform.user.create({ data: { email, authSubject: email } });
    const membership = await t.clients.platform.membership.create({ data: { tenantId: acmeId, userId: user.id, role: "VIEWER" } });
    return { user, membership };
  }

  it("the dashboard's page statement carries the COMMIT only when the operation reads nothing after it", async () => {
    const email = `msg-${randomBytes(4).toString("hex")}@acme.test`;
    const user = await t.clients.platform.user.create({ data: { email, authSubject: email } });
    await t.clients.platform.membership.create({ data: { tenantId: acmeId, userId: user.id, role: "VIEWER" } });
    const token = await t.token(email, "acme");
    const page = `projects(first: 2) { __typename pageInfo { hasNextPage endCursor } edges { cursor node { id name createdAt deploymentCount
      latestDeployment { id status createdBy { email } } deployments(first: 2) { edges { node { id branch createdBy { id email } } } } } }`;
    const messages = async (q: string) => {
      await t.gql(q, { token });
      const { result, statements } = await counter.record(() => t.gql(q, { token }));
      expect(result.body.errors).toBeUndefined();
      const app = ofPool(statements, "app");
      return { count: messagesOf(app), last: app.at(-1)!, lastAlone: app.filter((s) => s.message === app.at(-1)!.message).length === 1 };
    };
    // Everything from the page's rows: BEGIN + settings + facts, then the statement with its COMMIT.
    const alone = await messages(`{ ${page} } }`);
    expect(alone).toMatchObject({ count: 2, last: { sql: "COMMIT" }, lastAlone: false });
    // totalCount is counted after the page: COMMIT in a message of its own
    // (executed field by field: a cursor is never SQL-planned, docs/sql-plans.md).
    const counted = await messages(`{ projects(first: 2) { totalCount edges { cursor node { id deploymentCount } } } }`);
    expect(counted).toMatchObject({ count: 4, last: { sql: "COMMIT" }, lastAlone: true });
    // Another root field, a nested field the rows do not carry: the same.
    for (const q of [`{ tenant { name } ${page} } }`, `{ projects(first: 2) { edges { node { id deploymentCount workflows(first: 1) { edges { node { id } } } } } } }`]) {
      expect((await messages(q)).lastAlone, q).toBe(true);
    }
  });

  describe("a read's last statement", () => {
    const open = (userId: string) =>
      new TenantDb(t.clients.app, { tenantId: acmeId, plan: "PRO", userId, statementTimeoutMs: 0, mode: "request", authorization: { apiKeyHash: null } });
    const inTransaction = Prisma.sql`SELECT current_setting('app.tenant_id', true) AS tenant, now() <> statement_timestamp() AS "inTransaction"`;

    it("is sent with its COMMIT in one message, and the connection goes back once both are answered", async () => {
      const { user } = await newMember();
      const db = open(user.id);
      await db.authorize();
      const { result, statements } = await counter.record(() => db.queryRaw<{ n: number }>(Prisma.sql`SELECT count(*)::int AS n FROM projects WHERE tenant_id = ${acmeId}::uuid`, { last: true }));
      expect(result[0]!.n).toBeGreaterThan(0);
      expect(statements.map((s) => s.sql)).toEqual([expect.stringMatching(/^SELECT count/), "COMMIT"]);
      expect(messagesOf(statements)).toBe(1);
      // Committed and given back: no connection of the tier is held any more.
      const pool = t.clients.appPools.PRO;
      expect(pool.totalCount - pool.idleCount).toBe(0);
      await db.finish();
    });

    it("a statement after it runs in a transaction of its own, its facts read again; refused once they no longer admit", async () => {
      const { user, membership } = await newMember();
      const db = open(user.id);
      await db.authorize();
      await db.queryRaw(Prisma.sql`SELECT 1`, { last: true });
      const { result, statements } = await counter.record(() => db.queryRaw<{ tenant: string; inTransaction: boolean }>(inTransaction));
      expect(result[0]).toEqual({ tenant: acmeId, inTransaction: true });
      expect(statements[0]!.sql).toMatch(/^BEGIN ISOLATION LEVEL REPEATABLE READ; .*app_request_facts/);
      await db.finish();

      const later = open(user.id);
      await later.authorize();
      await later.queryRaw(Prisma.sql`SELECT 1`, { last: true });
      await t.clients.platform.membership.delete({ where: { tenantId_id: { tenantId: acmeId, id: membership.id } } });
      await expect(later.queryRaw(inTransaction)).rejects.toMatchObject({ extensions: { code: "SERVICE_UNAVAILABLE" } });
      await later.finish();
    });

    it("a failing last statement ends its transaction: the connection comes back clean", async () => {
      const { user } = await newMember();
      const pool = t.clients.appPools.PRO;
      for (let i = 0; i < pool.options.max + 1; i++) {
        const db = open(user.id);
        await db.authorize();
        await expect(db.queryRaw(Prisma.sql`SELECT 1 / 0`, { last: true })).rejects.toThrow(/division by zero/);
        await db.finish();
      }
      const db = open(user.id);
      const [row] = await db.queryRaw<{ tenant: string; inTransaction: boolean }>(inTransaction);
      expect(row).toEqual({ tenant: acmeId, inTransaction: true });
      await db.finish();
    });
  });
});
