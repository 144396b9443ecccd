import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiKeyUse, LAST_USED_FLUSH_MS } from "../../src/tenancy/last-used.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { ManualClock } from "../helpers/manual-clock.ts";
import { createReplica, sharedStores, type Gql } from "../helpers/replica.ts";

/**
 * API keys end to end: created through GraphQL, used with X-API-Key (tenant
 * and role fixed by the key), lastUsedAt coalesced, expiry, rotation with a
 * grace period, and revocation refused on the next request on every replica.
 * The app runs on a clock of the test's (starting at the real time, moved
 * only by the test), so the times it writes are the clock's, exactly.
 */

const CREATE = `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id name role prefix createdAt lastUsedAt expiresAt revokedAt } } }`;
const ROTATE = `mutation($i: RotateApiKeyInput!) { rotateApiKey(input: $i) { secret apiKey { id prefix } } }`;
const REVOKE = `mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { apiKey { id revokedAt } } }`;
const WHO = `{ tenant { slug } }`;

describe("API keys", () => {
  let t: TestApp;
  let replica: { gql: Gql; close(): Promise<void> };
  const [storeA, storeB] = sharedStores(2);
  let admin: string;
  const clock = new ManualClock();

  const withKey = (secret: string, app: { gql: Gql } = t, headers: Record<string, string> = {}) => (query: string, variables?: Record<string, unknown>) =>
    app.gql(query, { variables, headers: { "x-api-key": secret, ...headers } });
  const create = async (input: Record<string, unknown>) => {
    const res = await t.gql(CREATE, { token: admin, variables: { i: input } });
    expect(res.body.errors).toBeUndefined();
    return res.body.data.createApiKey as { secret: string; apiKey: Record<string, any> };
  };

  beforeAll(async () => {
    t = await createTestApp({ store: storeA, clock: clock.now });
    replica = createReplica(t, storeB!, { clock: clock.now });
    admin = await t.memberToken("acme", "ADMIN");
  });
  afterAll(async () => {
    await replica?.close();
    await t?.close();
    await storeA!.close();
    if (storeB !== storeA) await storeB!.close();
  });

  it("creates a key: a tgk_ secret shown once with 32 random bytes, stored only as its SHA-256", async () => {
    const { secret, apiKey } = await create({ name: "CI", role: "DEVELOPER" });
    expect(secret).toMatch(/^tgk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(secret.split("_").slice(2).join("_"), "base64url")).toHaveLength(32);
    expect(apiKey).toMatchObject({ name: "CI", role: "DEVELOPER", prefix: secret.slice(0, 16), lastUsedAt: null, revokedAt: null });
    const row = await t.clients.platform.apiKey.findFirstOrThrow({ where: { prefix: apiKey.prefix } });
    expect(row.secretHash).toBe(createHash("sha256").update(secret).digest("hex"));
    expect(JSON.stringify(row)).not.toContain(secret.slice(17));
    // Listed (ADMIN) without any secret.
    const list = await t.gql(`{ apiKeys(first: 10) { totalCount edges { node { id name prefix role } } } }`, { token: admin });
    expect(list.body.data.apiKeys.edges.map((e: any) => e.node.id)).toContain(apiKey.id);
    expect(JSON.stringify(list.body)).not.toContain(secret.slice(17));
    const audit = await t.clients.platform.auditLogEntry.findFirstOrThrow({ where: { action: "apiKey.create", targetId: apiKey.id } });
    expect(JSON.stringify(audit)).not.toContain(secret.slice(17));
  });

  it("refuses OWNER keys and past expiry dates, and keys are ADMIN business", async () => {
    const owner = await t.gql(CREATE, { token: admin, variables: { i: { name: "root", role: "OWNER" } } });
    expect(owner.body.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "role" });
    const past = await t.gql(CREATE, { token: admin, variables: { i: { name: "old", role: "VIEWER", expiresAt: "2000-01-01T00:00:00Z" } } });
    expect(past.body.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "expiresAt" });
    const dev = await t.memberToken("acme", "DEVELOPER");
    const list = await t.gql(`{ apiKeys { totalCount } }`, { token: dev });
    expect(list.body.errors?.[0].extensions).toMatchObject({ code: "FORBIDDEN", requires: "ADMIN" });
    // Not through node(id) either.
    const { apiKey } = await create({ name: "peek", role: "VIEWER" });
    const node = await t.gql(`query($id: ID!) { node(id: $id) { ... on ApiKey { name prefix } } }`, { token: dev, variables: { id: apiKey.id } });
    expect(node.body.data?.node ?? null).toBeNull();
    expect(node.body.errors?.[0].extensions.code).toBe("FORBIDDEN");
  });

  it("authenticates with X-API-Key: the key fixes tenant and role", async () => {
    const viewer = await create({ name: "reader", role: "VIEWER" });
    const developer = await create({ name: "deployer", role: "DEVELOPER" });
    expect((await withKey(viewer.secret)(WHO)).body.data).toEqual({ tenant: { slug: "acme" } });
    const denied = await withKey(viewer.secret)(`mutation { createProject(input: { name: "By Key" }) { project { id } } }`);
    expect(denied.body.errors?.[0].extensions).toMatchObject({ code: "FORBIDDEN", requires: "DEVELOPER" });
    const ok = await withKey(developer.secret)(`mutation { createProject(input: { name: "By Key" }) { project { id } } }`);
    expect(ok.body.errors).toBeUndefined();
    const entry = await t.clients.platform.auditLogEntry.findFirstOrThrow({
      where: { action: "project.create", targetId: ok.body.data.createProject.project.id },
    });
    expect(entry).toMatchObject({ actorType: "API_KEY", actorId: developer.apiKey.id, actorLabel: `key:${developer.apiKey.prefix}` });
    const keys = await withKey(developer.secret)(`{ apiKeys { totalCount } }`);
    expect(keys.body.errors?.[0].extensions).toMatchObject({ code: "FORBIDDEN", requires: "ADMIN" });
    // Its own tenant named explicitly is fine; another tenant is refused.
    expect((await withKey(viewer.secret, t, { "x-tenant-id": "acme" })(WHO)).body.data).toEqual({ tenant: { slug: "acme" } });
    const other = await withKey(viewer.secret, t, { "x-tenant-id": "globex" })(WHO);
    expect(other.body.errors?.[0].extensions.code).toBe("TENANT_ACCESS_DENIED");
    expect(other.body.data ?? null).toBeNull();
    const bogus = await withKey(`${viewer.secret}x`)(WHO);
    expect(bogus.status).toBe(401);
    expect(bogus.body.errors?.[0].extensions.code).toBe("UNAUTHENTICATED");
  });

  it("a request with a key records its lastUsedAt (fire-and-forget) at the app's clock, which the key's node shows", async () => {
    const { secret, apiKey } = await create({ name: "used", role: "VIEWER" });
    clock.advance(1_000);
    expect((await withKey(secret)(WHO)).status).toBe(200);
    // The request does not wait for the write: the app's writes under way are awaited.
    await t.settle();
    const row = await t.clients.platform.apiKey.findFirstOrThrow({ where: { prefix: apiKey.prefix } });
    expect(row.lastUsedAt?.getTime()).toBe(clock.now());
    const listed = await t.gql(`query($id: ID!) { node(id: $id) { ... on ApiKey { lastUsedAt } } }`, { token: admin, variables: { id: apiKey.id } });
    expect(Date.parse(listed.body.data.node.lastUsedAt)).toBe(clock.now());
  });

  it("coalesces lastUsedAt writes to one a minute per key (clock injected)", async () => {
    const { apiKey } = await create({ name: "busy", role: "VIEWER" });
    const key = await t.clients.platform.apiKey.findFirstOrThrow({ where: { prefix: apiKey.prefix } });
    const lastUsed = async () => (await t.clients.platform.apiKey.findUniqueOrThrow({ where: { tenantId_id: { tenantId: key.tenantId, id: key.id } } })).lastUsedAt?.getTime();
    const t0 = Date.UTC(2030, 0, 1, 12, 0, 0);
    const uses = new ApiKeyUse(t.clients.platform);
    await uses.note(key, t0);
    expect(await lastUsed()).toBe(t0);
    // Within the minute: no write at all.
    expect(uses.note(key, t0 + 1_000)).toBeUndefined();
    expect(uses.note(key, t0 + LAST_USED_FLUSH_MS - 1)).toBeUndefined();
    expect(await lastUsed()).toBe(t0);
    // A minute later: written again.
    await uses.note(key, t0 + LAST_USED_FLUSH_MS);
    expect(await lastUsed()).toBe(t0 + LAST_USED_FLUSH_MS);
  });

  it("a last use is not written into a key revoked or expired behind the cache (PostgreSQL refuses that request)", async () => {
    const t0 = Date.UTC(2030, 0, 1, 12, 0, 0);
    const uses = new ApiKeyUse(t.clients.platform);
    for (const [name, change] of [
      ["revoked behind the cache", { revokedAt: new Date(t0 - 1_000) }],
      ["expired", { expiresAt: new Date(t0) }],
    ] as const) {
      const { apiKey } = await create({ name, role: "VIEWER" });
      const key = await t.clients.platform.apiKey.findFirstOrThrow({ where: { prefix: apiKey.prefix } });
      await t.clients.platform.apiKey.update({ where: { tenantId_id: { tenantId: key.tenantId, id: key.id } }, data: change });
      await uses.note(key, t0);
      const row = await t.clients.platform.apiKey.findUniqueOrThrow({ where: { tenantId_id: { tenantId: key.tenantId, id: key.id } } });
      expect(row.lastUsedAt, name).toBeNull();
    }
  });

  it("refuses a key from its expiresAt on, by the app's clock, on every replica", async () => {
    const { secret } = await create({ name: "short", role: "VIEWER", expiresAt: new Date(clock.now() + 3_600_000).toISOString() });
    for (const app of [t, replica]) expect((await withKey(secret, app)(WHO)).status).toBe(200);
    clock.advance(3_600_000 - 1);
    for (const app of [t, replica]) expect((await withKey(secret, app)(WHO)).status).toBe(200);
    clock.advance(1);
    for (const app of [t, replica]) {
      const res = await withKey(secret, app)(WHO);
      expect(res.status).toBe(401);
      expect(res.body.errors?.[0].extensions.code).toBe("UNAUTHENTICATED");
    }
  });

  it("revocation holds on the next request on every replica; revokedAt is the app's clock", async () => {
    const { secret, apiKey } = await create({ name: "doomed", role: "VIEWER" });
    expect((await withKey(secret, t)(WHO)).status).toBe(200);
    expect((await withKey(secret, replica)(WHO)).status).toBe(200);
    clock.advance(2_000);
    const res = await t.gql(REVOKE, { token: admin, variables: { i: { id: apiKey.id } } });
    expect(Date.parse(res.body.data.revokeApiKey.apiKey.revokedAt)).toBe(clock.now());
    for (const app of [t, replica]) {
      const after = await withKey(secret, app)(WHO);
      expect(after.status).toBe(401);
      expect(after.body.errors?.[0].extensions.code).toBe("UNAUTHENTICATED");
    }
    const rotate = await t.gql(ROTATE, { token: admin, variables: { i: { id: apiKey.id } } });
    expect(rotate.body.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "id" });
  });

  it("rotation: the old secret works for the grace period, then is refused", async () => {
    const { secret: old, apiKey } = await create({ name: "rotating", role: "VIEWER" });
    expect((await withKey(old, replica)(WHO)).status).toBe(200);
    const r1 = await t.gql(ROTATE, { token: admin, variables: { i: { id: apiKey.id, gracePeriodMinutes: 30 } } });
    expect(r1.body.errors).toBeUndefined();
    const next = r1.body.data.rotateApiKey.secret as string;
    expect(next).not.toBe(old);
    expect(next.startsWith(apiKey.prefix)).toBe(true);
    for (const app of [t, replica]) {
      expect((await withKey(old, app)(WHO)).status).toBe(200);
      expect((await withKey(next, app)(WHO)).status).toBe(200);
    }
    // The grace period ends 30 minutes after the rotation, by the app's clock.
    clock.advance(30 * 60_000 - 1);
    for (const app of [t, replica]) expect((await withKey(old, app)(WHO)).status).toBe(200);
    clock.advance(1);
    for (const app of [t, replica]) {
      expect((await withKey(old, app)(WHO)).status).toBe(401);
      expect((await withKey(next, app)(WHO)).status).toBe(200);
    }
    // Without grace the old secret stops at once, and the secret before it is forgotten.
    const r2 = await t.gql(ROTATE, { token: admin, variables: { i: { id: apiKey.id, gracePeriodMinutes: 0 } } });
    const third = r2.body.data.rotateApiKey.secret as string;
    for (const app of [t, replica]) {
      expect((await withKey(next, app)(WHO)).status).toBe(401);
      expect((await withKey(old, app)(WHO)).status).toBe(401);
      expect((await withKey(third, app)(WHO)).status).toBe(200);
    }
    const bad = await t.gql(ROTATE, { token: admin, variables: { i: { id: apiKey.id, gracePeriodMinutes: -1 } } });
    expect(bad.body.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "gracePeriodMinutes" });
    const actions = await t.clients.platform.auditLogEntry.findMany({ where: { targetId: apiKey.id }, select: { action: true } });
    expect(actions.map((a) => a.action).sort()).toEqual(["apiKey.create", "apiKey.rotate", "apiKey.rotate"]);
  });
});
