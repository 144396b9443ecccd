import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { DEFAULT_CACHE_TTL_SECONDS } from "../../src/infra/response-cache.ts";
import { hourStart, requestCounterKey } from "../../src/infra/request-counter.ts";
import { RedisStore } from "../../src/infra/store.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { query } from "../helpers/catalog.ts";
import { startOwnRedis, type OwnRedis } from "../helpers/own-redis.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/**
 * Issue 14: the tenant-aware response cache (docs/response-cache.md), on a
 * Redis of the test's own (its keys are inspected) and the test's database.
 * "Fresh" means: the read after a change is a MISS and equals what the same
 * read answers with the cache bypassed (`Cache-Control: no-cache`).
 */

const OBSERVE = `{
  tenant { name plan status }
  projects(first: 10, orderBy: { field: CREATED_AT, direction: DESC }) { totalCount edges { node { id name description deploymentCount
    deployments(first: 3) { edges { node { id status } } }
    workflows(first: 3) { edges { node { id name status } } } } } }
  workflows(first: 10) { totalCount edges { node { id name status } } }
  members(first: 20) { totalCount edges { node { id role user { email name } } } }
  apiKeys(first: 10) { totalCount edges { node { id name role revokedAt prefix } } }
  auditLog(first: 3) { edges { node { action } } }
}`;
const PROJECTS = `{ projects(first: 20) { totalCount edges { node { id name } } } }`;
const code = (res: { body: { errors?: any[] } }) => res.body.errors?.[0]?.extensions?.code;
const xcache = (res: { headers: Headers }) => res.headers.get("x-cache");

describe("response cache", () => {
  let redis: OwnRedis;
  let t: TestApp;
  let ids: Record<string, string>;
  let owner: string;
  let admin: string;
  // The app's clock: each test in a minute of its own (rate-limit windows),
  // all of them in one hour (request counts), whatever the wall clock does.
  const clock = new ManualClock(hourStart(Date.now()) + 1_000);

  beforeAll(async () => {
    redis = await startOwnRedis();
    t = await createTestApp({ store: new RedisStore(redis.url), responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS }, clock: clock.now });
    ids = await tenantIdsBySlug(t);
    owner = await t.memberToken("acme", "OWNER");
    admin = await t.adminToken();
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
    await redis?.close();
  });
  beforeEach(() => clock.advance(60_000));

  /** One read; its cache write (if any) has landed when it returns. */
  async function read(q: string, token: string, headers: Record<string, string> = {}, variables?: Record<string, unknown>) {
    const res = await t.gql(q, { token, headers, variables });
    await t.settle();
    return res;
  }
  async function mutate(q: string, token: string, variables: Record<string, unknown>) {
    const res = await t.gql(q, { token, variables });
    expect(res.body.errors, q).toBeUndefined();
    return res.body.data;
  }
  /** The read is cached: MISS (or already HIT), then HIT with the same body. */
  async function warm(q: string, token: string, headers: Record<string, string> = {}) {
    const first = await read(q, token, headers);
    expect(first.body.errors).toBeUndefined();
    const second = await read(q, token, headers);
    expect(xcache(second)).toBe("HIT");
    expect(second.body).toEqual(first.body);
    return second;
  }
  /** The next read is a MISS equal to the uncached answer, and is cached again. */
  async function expectFresh(step: string, q: string, token: string) {
    const next = await read(q, token);
    expect(xcache(next), step).toBe("MISS");
    const truth = await read(q, token, { "cache-control": "no-cache" });
    expect(xcache(truth), step).toBe("BYPASS");
    expect(next.body, step).toEqual(truth.body);
    expect(xcache(await read(q, token)), step).toBe("HIT");
    return next.body;
  }
  const rcKeys = () => redis.client.keys("t:{*}:rc:*");

  it("caches a query per tenant: MISS then HIT with the same answer, under t:{<tenantId>}:rc:; no-cache and mutations bypass", async () => {
    await redis.client.flushall();
    const first = await read(PROJECTS, owner);
    expect(xcache(first)).toBe("MISS");
    expect(first.body.data.projects.totalCount).toBeGreaterThan(0);
    const keys = await rcKeys();
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(new RegExp(`^t:\\{${ids.acme}\\}:rc:[0-9a-f]{64}$`));
    const hit = await read(PROJECTS, owner);
    expect(xcache(hit)).toBe("HIT");
    expect(hit.body).toEqual(first.body);
    // The client asks for a fresh answer: not read, not written.
    const bypass = await read(PROJECTS, owner, { "cache-control": "no-cache" });
    expect(xcache(bypass)).toBe("BYPASS");
    expect(bypass.body).toEqual(first.body);
    // A batch of hits: each answer written from its stored text.
    const batch = await t.app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${owner}` },
      body: JSON.stringify([{ query: PROJECTS }, { query: PROJECTS }]),
    });
    expect(xcache(batch)).toBe("HIT");
    expect(await batch.json()).toEqual([first.body, first.body]);
    const m = await t.gql(`mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }`, { token: owner, variables: { i: { name: "Bypassed" } } });
    expect(xcache(m)).toBe("BYPASS");
    // The variables are part of the key, in any key order.
    const q = `query($f: Int, $a: String) { projects(first: $f, after: $a) { edges { node { name } } } }`;
    expect(xcache(await read(q, owner, {}, { f: 1, a: null }))).toBe("MISS");
    expect(xcache(await read(q, owner, {}, { a: null, f: 1 }))).toBe("HIT");
    expect(xcache(await read(q, owner, {}, { f: 2, a: null }))).toBe("MISS");
  });

  it("every kind of tenant mutation: the next read is fresh", async () => {
    let before = (await warm(OBSERVE, owner)).body;
    const step = async (name: string, q: string, variables: Record<string, unknown>) => {
      const data = await mutate(q, owner, variables);
      const after = await expectFresh(name, OBSERVE, owner);
      expect(after, name).not.toEqual(before);
      before = after;
      return data;
    };
    const project = (
      await step("createProject", `mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }`, { i: { name: "Cache one" } })
    ).createProject.project.id;
    await step("updateProject", `mutation($i: UpdateProjectInput!) { updateProject(input: $i) { project { id } } }`, {
      i: { id: project, description: "changed" },
    });
    const deployment = (
      await step("createDeployment", `mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }`, {
        i: { projectId: project, branch: "main" },
      })
    ).createDeployment.deployment.id;
    await step("updateDeploymentStatus", `mutation($i: UpdateDeploymentStatusInput!) { updateDeploymentStatus(input: $i) { deployment { id } } }`, {
      i: { id: deployment, status: "BUILDING" },
    });
    const workflow = (
      await step("createWorkflow", `mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { workflow { id } } }`, {
        i: { name: "Nightly", projectId: project },
      })
    ).createWorkflow.workflow.id;
    await step("updateWorkflow", `mutation($i: UpdateWorkflowInput!) { updateWorkflow(input: $i) { workflow { id } } }`, {
      i: { id: workflow, status: "PAUSED" },
    });
    await step("deleteWorkflow", `mutation($i: DeleteWorkflowInput!) { deleteWorkflow(input: $i) { deletedWorkflowId } }`, { i: { id: workflow } });
    const membership = (
      await step("inviteMember", `mutation($i: InviteMemberInput!) { inviteMember(input: $i) { membership { id } } }`, {
        i: { email: "cache-invitee@acme.test", role: "VIEWER" },
      })
    ).inviteMember.membership.id;
    await step("updateMemberRole", `mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { membership { id } } }`, {
      i: { membershipId: membership, role: "DEVELOPER" },
    });
    await step("removeMember", `mutation($i: RemoveMemberInput!) { removeMember(input: $i) { removedMembershipId } }`, { i: { membershipId: membership } });
    const key = (
      await step("createApiKey", `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }`, {
        i: { name: "cache key", role: "VIEWER" },
      })
    ).createApiKey.apiKey.id;
    await step("rotateApiKey", `mutation($i: RotateApiKeyInput!) { rotateApiKey(input: $i) { apiKey { id } secret } }`, {
      i: { id: key, gracePeriodMinutes: 0 },
    });
    await step("revokeApiKey", `mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { apiKey { id } } }`, { i: { id: key } });
    await step("deleteProject", `mutation($i: DeleteProjectInput!) { deleteProject(input: $i) { deletedProjectId } }`, { i: { id: project } });
  });

  it("platform changes: plan, limits, cache TTL, suspension, reactivation; the next read is fresh or refused", async () => {
    const tenantId = toGlobalId("Tenant", ids.acme!);
    await warm(OBSERVE, owner);
    await mutate(`mutation($i: ChangeTenantPlanInput!) { changeTenantPlan(input: $i) { tenant { id } } }`, admin, { i: { tenantId, plan: "ENTERPRISE" } });
    expect((await expectFresh("changeTenantPlan", OBSERVE, owner)).data.tenant.plan).toBe("ENTERPRISE");
    await mutate(`mutation($i: SetTenantLimitsInput!) { setTenantLimits(input: $i) { tenant { id } } }`, admin, {
      i: { tenantId, limits: [{ resource: "PROJECTS", limit: 500 }] },
    });
    await expectFresh("setTenantLimits", OBSERVE, owner);
    await mutate(`mutation($i: SuspendTenantInput!) { suspendTenant(input: $i) { tenant { id } } }`, admin, { i: { tenantId, reason: "cache test" } });
    const suspended = await read(OBSERVE, owner);
    expect(suspended.status).toBe(403);
    expect(code(suspended)).toBe("TENANT_SUSPENDED");
    expect(suspended.body.data ?? null).toBeNull();
    expect(xcache(suspended)).toBe("BYPASS");
    await mutate(`mutation($i: ReactivateTenantInput!) { reactivateTenant(input: $i) { tenant { id } } }`, admin, { i: { tenantId } });
    expect((await expectFresh("reactivateTenant", OBSERVE, owner)).data.tenant.status).toBe("ACTIVE");
    await mutate(`mutation($i: ChangeTenantPlanInput!) { changeTenantPlan(input: $i) { tenant { id } } }`, admin, { i: { tenantId, plan: "PRO" } });
    await expectFresh("changeTenantPlan back", OBSERVE, owner);
  });

  it("a change made by any path (plain SQL on any tracked table) makes the next read fresh", async () => {
    const q = `{ tenant { name } projects(first: 10) { edges { node { name deployments(first: 10) { edges { node { branch } } } } } }
      workflows(first: 20) { edges { node { name } } }
      members(first: 20) { edges { node { role user { name } } } } apiKeys(first: 20) { edges { node { name } } } auditLog(first: 20) { edges { node { action } } } }`;
    const acme = ids.acme!;
    const changes: [string, string][] = [
      ["projects", `UPDATE projects SET name = name || '.' WHERE tenant_id = '${acme}'`],
      ["deployments", `UPDATE deployments SET branch = 'sql-' || id WHERE tenant_id = '${acme}'`],
      ["workflows", `INSERT INTO workflows (tenant_id, name) VALUES ('${acme}', 'from sql')`],
      ["memberships", `UPDATE memberships SET created_at = created_at - interval '1 second' WHERE tenant_id = '${acme}'`],
      ["api_keys", `UPDATE api_keys SET name = name || '.' WHERE tenant_id = '${acme}'`],
      ["audit_log", `DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE tenant_id = '${acme}' ORDER BY created_at DESC LIMIT 1)`],
      ["tenant_limit_overrides", `INSERT INTO tenant_limit_overrides (tenant_id, resource, "limit") VALUES ('${acme}', 'SEATS', 40) ON CONFLICT (tenant_id, resource) DO UPDATE SET "limit" = 41`],
      ["tenants", `UPDATE tenants SET name = name || '.' WHERE id = '${acme}'`],
      ["users", `UPDATE users SET name = coalesce(name, '') || '.' WHERE id IN (SELECT user_id FROM memberships WHERE tenant_id = '${acme}')`],
    ];
    // Each change touches a row: acme has a key of its own here, whatever other tests made.
    await query(t.db.url, `INSERT INTO api_keys (tenant_id, name, role, prefix, secret_hash) VALUES ($1, 'sql key', 'VIEWER', 'tg_sqlkey', gen_random_uuid()::text)`, [acme]);
    for (const [table, sql] of changes) {
      await warm(q, owner);
      await query(t.db.url, sql);
      await expectFresh(`a change of ${table}`, q, owner);
    }
    // Once per transaction and tenant: a bump rolled back with its savepoint does not hide the next change.
    await warm(q, owner);
    await query(
      t.db.url,
      `BEGIN; SAVEPOINT s; UPDATE projects SET name = name || '!' WHERE tenant_id = '${acme}'; ROLLBACK TO SAVEPOINT s;
       UPDATE projects SET name = name || '?' WHERE tenant_id = '${acme}'; COMMIT`,
    );
    expect((await expectFresh("a change after a rolled-back savepoint", q, owner)).data.projects.edges[0].node.name).toMatch(/\?$/);
    // A key's lastUsedAt (written on its first use each minute) moves nothing, and is never cached.
    await warm(q, owner);
    await query(t.db.url, `UPDATE api_keys SET last_used_at = now() WHERE tenant_id = '${acme}'`);
    expect(xcache(await read(q, owner))).toBe("HIT");
    const lastUsed = `{ apiKeys(first: 5) { edges { node { lastUsedAt } } } }`;
    expect([xcache(await read(lastUsed, owner)), xcache(await read(lastUsed, owner))]).toEqual(["MISS", "MISS"]);
    // A change of another tenant leaves acme's entries addressed.
    await warm(q, owner);
    await query(t.db.url, `UPDATE projects SET name = name || '.' WHERE tenant_id = '${ids.globex}'`);
    expect(xcache(await read(q, owner))).toBe("HIT");
  });

  it("every tenant table but usage_counters, the generations themselves and the analytics counters carries the generation triggers", async () => {
    const rows = await query<{ table: string; triggers: string[] }>(
      t.db.url,
      `SELECT c.relname AS table, coalesce(array_agg(tg.tgname::text ORDER BY tg.tgname) FILTER (WHERE tg.tgname IS NOT NULL), '{}') AS triggers
       FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
       LEFT JOIN pg_trigger tg ON tg.tgrelid = c.oid AND tg.tgname LIKE 'cache_generation_%'
       WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace
       GROUP BY c.relname ORDER BY c.relname`,
    );
    const missing = rows
      // tenant_stats, tenant_request_totals: derived, changed only with the counted rows (whose own triggers bump) or the request flush, read by the platform only.
      .filter((r) => !["usage_counters", "tenant_cache_generations", "tenant_stats", "tenant_request_totals"].includes(r.table))
      .filter((r) => r.triggers.join(",") !== "cache_generation_delete,cache_generation_insert,cache_generation_update")
      .map((r) => r.table);
    expect(rows.length).toBeGreaterThan(5);
    expect(missing).toEqual([]);
  });

  it("a removed member gets no cached data, though a member of the same role shares the entry", async () => {
    const invited = await mutate(`mutation($i: InviteMemberInput!) { inviteMember(input: $i) { membership { id } } }`, owner, {
      i: { email: "second-viewer@acme.test", role: "VIEWER" },
    });
    const second = await t.token("second-viewer@acme.test", "acme");
    const viewer = await t.memberToken("acme", "VIEWER");
    await warm(PROJECTS, second);
    // Same tenant, same role, same generation: the entry is shared.
    expect(xcache(await read(PROJECTS, viewer))).toBe("HIT");
    await mutate(`mutation($i: RemoveMemberInput!) { removeMember(input: $i) { removedMembershipId } }`, owner, {
      i: { membershipId: invited.inviteMember.membership.id },
    });
    // The remaining viewer caches the read again under the new generation: the key the removed one would address.
    await warm(PROJECTS, viewer);
    const refused = await read(PROJECTS, second);
    expect(refused.status).toBe(403);
    expect(code(refused)).toBe("TENANT_ACCESS_DENIED");
    expect(refused.body.data ?? null).toBeNull();
    expect(xcache(refused)).not.toBe("HIT");
  });

  it("a downgraded role gets no cached data; VIEWER and ADMIN answers are not shared where they differ", async () => {
    const keys = `{ apiKeys(first: 10) { totalCount } }`;
    const adminToken = await t.memberToken("acme", "ADMIN");
    const viewer = await t.memberToken("acme", "VIEWER");
    await warm(keys, adminToken);
    const forbidden = await read(keys, viewer);
    expect(code(forbidden)).toBe("FORBIDDEN");
    expect(forbidden.body.data?.apiKeys ?? null).toBeNull();
    expect(xcache(forbidden)).toBe("MISS");
    // An answer with errors is not cached either.
    expect(xcache(await read(keys, viewer))).toBe("MISS");
    // A selection every role answers alike is one entry for all of them (response-cache-roles.test.ts);
    // one with a field above VIEWER keeps an entry per role.
    const shared = `{ projects(first: 7) { totalCount } }`;
    await warm(shared, adminToken);
    expect(xcache(await read(shared, await t.memberToken("acme", "DEVELOPER")))).toBe("HIT");
    const perRole = `{ projects(first: 7) { totalCount } auditLog(first: 1) { edges { node { action } } } }`;
    await warm(perRole, adminToken);
    expect(xcache(await read(perRole, owner))).toBe("MISS");
    expect(xcache(await read(perRole, adminToken))).toBe("HIT");

    const members = await t.gql(`{ members(first: 50) { edges { node { id role user { email } } } } }`, { token: owner });
    const adminMembership = members.body.data.members.edges.find((e: any) => e.node.user.email === "admin@acme.test").node.id;
    await warm(keys, adminToken);
    await mutate(`mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { membership { id } } }`, owner, {
      i: { membershipId: adminMembership, role: "VIEWER" },
    });
    const demoted = await read(keys, adminToken);
    expect(code(demoted)).toBe("FORBIDDEN");
    expect(demoted.body.data?.apiKeys ?? null).toBeNull();
    await mutate(`mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { membership { id } } }`, owner, {
      i: { membershipId: adminMembership, role: "ADMIN" },
    });
  });

  it("a revoked API key gets no cached data", async () => {
    const created = await mutate(`mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }`, owner, {
      i: { name: "reader", role: "VIEWER" },
    });
    const headers = { "x-api-key": created.createApiKey.secret };
    const viaKey = async () => {
      const res = await t.app.fetch("http://localhost/graphql", { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ query: PROJECTS }) });
      await t.settle();
      return { status: res.status, headers: res.headers, body: (await res.json()) as any };
    };
    await viaKey();
    expect(xcache(await viaKey())).toBe("HIT");
    await mutate(`mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { apiKey { id } } }`, owner, { i: { id: created.createApiKey.apiKey.id } });
    const refused = await viaKey();
    expect(refused.status).toBe(401);
    expect(code(refused)).toBe("UNAUTHENTICATED");
    expect(refused.body.data ?? null).toBeNull();
  });

  it("another tenant never receives the entry; the caller joins the key where the answer depends on who asks", async () => {
    const acmeAnswer = (await warm(PROJECTS, owner)).body;
    const globex = await read(PROJECTS, await t.memberToken("globex", "OWNER"));
    expect(xcache(globex)).toBe("MISS");
    expect(globex.body).not.toEqual(acmeAnswer);
    const names = (b: any) => b.data.projects.edges.map((e: any) => e.node.name);
    const globexNames = new Set(names(globex.body));
    expect(names(acmeAnswer).some((n: string) => globexNames.has(n))).toBe(false);
    for (const key of await rcKeys()) expect([ids.acme, ids.globex, ids.wayne].map((id) => `t:{${id}}:`)).toContain(key.slice(0, key.indexOf("}:") + 2));

    const me = `{ viewer { user { email } role } }`;
    const developer = await t.memberToken("acme", "DEVELOPER");
    await mutate(`mutation($i: InviteMemberInput!) { inviteMember(input: $i) { membership { id } } }`, owner, {
      i: { email: "second-dev@acme.test", role: "DEVELOPER" },
    });
    const other = await t.token("second-dev@acme.test", "acme");
    expect((await warm(me, developer)).body.data.viewer.user.email).toBe("developer@acme.test");
    const theirs = await read(me, other);
    expect(xcache(theirs)).toBe("MISS");
    expect(theirs.body.data.viewer).toEqual({ user: { email: "second-dev@acme.test" }, role: "DEVELOPER" });
    expect((await warm(me, other)).body.data.viewer.user.email).toBe("second-dev@acme.test");
  });

  it("@crossTenant operations are never cached and write their audit entry every time; a hit still counts for the rate limit and apiRequests", async () => {
    await query(t.db.url, `UPDATE users SET is_platform_admin = true WHERE email = 'owner@acme.test'`);
    try {
      const q = `{ tenant { name } platform { totals { tenants } } }`;
      const count = async () => (await query<{ n: number }>(t.db.url, `SELECT count(*)::int AS n FROM platform_audit_log WHERE action = 'platform.totals'`))[0]!.n;
      const before = await count();
      for (let i = 0; i < 3; i++) {
        const res = await read(q, owner);
        expect(res.body.errors).toBeUndefined();
        expect(res.body.data.platform.totals.tenants).toBe(3);
        expect(xcache(res)).toBe("MISS");
      }
      expect(await count()).toBe(before + 3);
    } finally {
      await query(t.db.url, `UPDATE users SET is_platform_admin = false WHERE email = 'owner@acme.test'`);
    }

    await warm(PROJECTS, owner);
    const counter = requestCounterKey(ids.acme!, hourStart(clock.now()));
    const requestsBefore = Number(await redis.client.get(counter));
    const a = await read(PROJECTS, owner);
    const b = await read(PROJECTS, owner);
    expect([xcache(a), xcache(b)]).toEqual(["HIT", "HIT"]);
    expect(Number(b.headers.get("x-ratelimit-remaining"))).toBe(Number(a.headers.get("x-ratelimit-remaining")) - 1);
    expect(Number(await redis.client.get(counter))).toBe(requestsBefore + 2);
  });

  it("TTL by plan (FREE 300 s, PRO 3600 s, ENTERPRISE until invalidated, kept a day at most), overridable per tenant", async () => {
    const ttlOf = async (token: string, tenantId: string) => {
      await redis.client.del(...((await redis.client.keys(`t:{${tenantId}}:rc:*`)) as string[]), "none");
      expect(xcache(await read(`{ tenant { slug } }`, token))).toBe("MISS");
      const [key] = await redis.client.keys(`t:{${tenantId}}:rc:*`);
      return redis.client.ttl(key!);
    };
    const ttlFree = await ttlOf(await t.memberToken("globex", "OWNER"), ids.globex!);
    expect(ttlFree).toBeGreaterThan(290);
    expect(ttlFree).toBeLessThanOrEqual(300);
    expect(await ttlOf(owner, ids.acme!)).toBeGreaterThan(3590);
    expect(await ttlOf(await t.memberToken("wayne", "OWNER"), ids.wayne!)).toBeGreaterThan(86_000);

    const tenantId = toGlobalId("Tenant", ids.acme!);
    const setTtl = (ttl: number | null) =>
      mutate(`mutation($i: SetTenantLimitsInput!) { setTenantLimits(input: $i) { tenant { id } } }`, admin, { i: { tenantId, limits: [], cacheTtlSeconds: ttl } });
    await setTtl(60);
    const overridden = await ttlOf(owner, ids.acme!);
    expect(overridden).toBeGreaterThan(50);
    expect(overridden).toBeLessThanOrEqual(60);
    await setTtl(null);
    expect(await ttlOf(owner, ids.acme!)).toBeGreaterThan(3590);
    const bad = await t.gql(`mutation($i: SetTenantLimitsInput!) { setTenantLimits(input: $i) { tenant { id } } }`, {
      token: admin,
      variables: { i: { tenantId, limits: [], cacheTtlSeconds: -1 } },
    });
    expect(code(bad)).toBe("BAD_USER_INPUT");
    expect(bad.body.errors?.[0].extensions.field).toBe("cacheTtlSeconds");
  });

  it("clearTenantCache empties the tenant's entries (audited, platform admins only); hit rate and counters are visible", async () => {
    // acme's entries and counts from none: whatever other tests cached, PROJECTS starts with a MISS.
    await redis.client.del(...(await redis.client.keys(`t:{${ids.acme}}:rc*`)), "none");
    await warm(PROJECTS, owner);
    await read(PROJECTS, owner);
    await warm(OBSERVE, owner);
    expect((await redis.client.keys(`t:{${ids.acme}}:rc:*`)).length).toBeGreaterThanOrEqual(2);
    const globexKeys = await redis.client.keys(`t:{${ids.globex}}:rc:*`);

    const clear = `mutation($i: ClearTenantCacheInput!) { clearTenantCache(input: $i) { tenant { id slug } } }`;
    const i = { tenantId: toGlobalId("Tenant", ids.acme!) };
    const refused = await t.gql(clear, { token: owner, variables: { i } });
    expect(code(refused)).toBe("FORBIDDEN");
    expect((await redis.client.keys(`t:{${ids.acme}}:rc:*`)).length).toBeGreaterThanOrEqual(2);

    const cleared = await mutate(clear, admin, { i });
    expect(cleared.clearTenantCache.tenant.slug).toBe("acme");
    expect(await redis.client.keys(`t:{${ids.acme}}:rc:*`)).toEqual([]);
    expect((await redis.client.keys(`t:{${ids.globex}}:rc:*`)).sort()).toEqual(globexKeys.sort());
    const audit = await query<{ n: number }>(t.db.url, `SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1 AND action = 'tenant.clearCache' AND cross_tenant`, [ids.acme]);
    expect(audit[0]!.n).toBe(1);
    await expectFresh("clearTenantCache", PROJECTS, owner);

    // Reads of acme since the counts were reset: PROJECTS MISS HIT HIT, OBSERVE MISS HIT, then MISS (cleared) and HIT: 4 hits of 7.
    const stats = await t.gql(`{ platform { tenantUsage(first: 10) { edges { node { tenant { slug } cacheHitRate } } } } }`, { token: admin });
    expect(stats.body.errors).toBeUndefined();
    const rate = Object.fromEntries(stats.body.data.platform.tenantUsage.edges.map((e: any) => [e.node.tenant.slug, e.node.cacheHitRate]));
    expect(rate.acme).toBeCloseTo(4 / 7, 5);

    const metrics = await (await t.app.fetch("http://localhost/metrics")).text();
    const series = (name: string) => Number(new RegExp(`${name}\\{cache="response",tenant="${ids.acme}"\\} (\\d+)`).exec(metrics)?.[1] ?? NaN);
    expect(series("tenantgraph_cache_hits_total")).toBeGreaterThanOrEqual(4);
    expect(series("tenantgraph_cache_misses_total")).toBeGreaterThanOrEqual(3);
  });

  it("purgeTenant removes the tenant's entries with its rows", async () => {
    const provisioned = await mutate(
      `mutation($i: ProvisionTenantInput!) { provisionTenant(input: $i) { tenant { id } } }`,
      admin,
      { i: { name: "Short lived", slug: "short-lived", plan: "PRO", owner: { email: "owner@short.test" } } },
    );
    const gid = provisioned.provisionTenant.tenant.id;
    const tenantId = (await tenantIdsBySlug(t))["short-lived"]!;
    const token = await t.token("owner@short.test", "short-lived");
    await warm(PROJECTS, token);
    expect((await redis.client.keys(`t:{${tenantId}}:rc:*`)).length).toBe(1);
    await mutate(`mutation($i: ScheduleTenantDeletionInput!) { scheduleTenantDeletion(input: $i) { tenant { id } } }`, admin, { i: { tenantId: gid } });
    await mutate(`mutation($i: PurgeTenantInput!) { purgeTenant(input: $i) { purgedTenantId } }`, admin, { i: { tenantId: gid } });
    expect(await redis.client.keys(`t:{${tenantId}}:rc:*`)).toEqual([]);
    expect(await query(t.db.url, `SELECT * FROM tenant_cache_generations WHERE tenant_id = $1`, [tenantId])).toEqual([]);
    const after = await read(PROJECTS, token);
    expect(after.body.data ?? null).toBeNull();
    expect(xcache(after)).not.toBe("HIT");
  });
});

/**
 * The hit/miss counts behind `cacheHitRate` are kept per UTC day of the
 * app's clock, counted and read by it: a clock ten days back counts in its
 * own day, and the rate follows the clock out of its two-day window.
 */
describe("response cache hit rate on the app's clock", () => {
  const clock = new ManualClock(Date.now() - 10 * 86_400_000);
  let t: TestApp;
  let ids: Record<string, string> = {};

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore(), clock: clock.now, responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS } });
    ids = await tenantIdsBySlug(t);
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });

  it("counts lookups in the clock's day, and reads the rate there", async () => {
    const owner = await t.memberToken("acme", "OWNER");
    const admin = await t.adminToken();
    const outcomes = [];
    for (let i = 0; i < 2; i++) {
      const res = await t.gql(`{ projects(first: 5) { edges { node { name } } } }`, { token: owner });
      await t.settle();
      outcomes.push(res.headers.get("x-cache"));
    }
    expect(outcomes).toEqual(["MISS", "HIT"]);
    const day = Math.floor(clock.now() / 86_400_000);
    expect(await t.store.get(`t:{${ids.acme}}:rcs:${day}:h`)).toBe("1");
    expect(await t.store.get(`t:{${ids.acme}}:rcs:${day}:m`)).toBe("1");
    const rate = async () => {
      const res = await t.gql(`{ platform { tenantUsage(first: 10) { edges { node { tenant { slug } cacheHitRate } } } } }`, { token: admin });
      expect(res.body.errors).toBeUndefined();
      return res.body.data.platform.tenantUsage.edges.find((e: any) => e.node.tenant.slug === "acme").node.cacheHitRate;
    };
    expect(await rate()).toBe(0.5);
    // Two days on, by the clock: the counts are out of the window.
    clock.advance(2 * 86_400_000);
    expect(await rate()).toBeNull();
  });
});
