import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";

/**
 * review PM-1: a read's statement after the one that carried its COMMIT
 * opens a transaction of its own whose facts must still admit the request
 * (docs/request-path.md, "The last statement"). What admits it is the
 * caller's membership, role, key, the tenant's status, plan, limits,
 * features, provider and route: not the tenant's measured storage, which
 * the storage refresher rewrites while the tenant writes. Before the fix a
 * new measurement in between refused the request (SERVICE_UNAVAILABLE,
 * "authorization") although nothing that admits it had changed.
 */
describe("the facts that admit a read, read again", () => {
  let t: TestApp;
  let acmeId: string;

  beforeAll(async () => {
    t = await createTestApp();
    acmeId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
  });
  afterAll(async () => t?.close());

  async function afterItsLastStatement() {
    const email = `adm-${randomBytes(4).toString("hex")}@acme.test`;
    const user = await t.clients.platform.user.create({ data: { email, authSubject: email } });
    await t.clients.platform.membership.create({ data: { tenantId: acmeId, userId: user.id, role: "VIEWER" } });
    const db = new TenantDb(t.clients.app, { tenantId: acmeId, plan: "PRO", userId: user.id, statementTimeoutMs: 0, mode: "request", authorization: { apiKeyHash: null } });
    await db.authorize();
    await db.queryRaw(Prisma.sql`SELECT 1`, { last: true });
    return db;
  }
  const later = (db: TenantDb) => db.queryRaw<{ tenant: string }>(Prisma.sql`SELECT current_setting('app.tenant_id', true) AS tenant`);

  it("a new storage measurement in between does not refuse it", async () => {
    const db = await afterItsLastStatement();
    // What the storage refresher writes (src/modules/storage/storage.service.ts).
    await t.clients.platform.$executeRaw`UPDATE tenants SET storage_bytes = storage_bytes + 8192, storage_measured_at = now() WHERE id = ${acmeId}::uuid`;
    await expect(later(db)).resolves.toEqual([{ tenant: acmeId }]);
    await db.finish();
  });

  it("a change of what admits it (the tenant suspended) still refuses it", async () => {
    const db = await afterItsLastStatement();
    await t.clients.platform.tenant.update({ where: { id: acmeId }, data: { status: "SUSPENDED" } });
    try {
      await expect(later(db)).rejects.toMatchObject({ extensions: { code: "SERVICE_UNAVAILABLE", dependency: "authorization" } });
    } finally {
      await t.clients.platform.tenant.update({ where: { id: acmeId }, data: { status: "ACTIVE" } });
      await db.finish();
    }
  });
});
