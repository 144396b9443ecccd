import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_CACHE_TTL_SECONDS } from "../../src/infra/response-cache.ts";
import { hourStart } from "../../src/infra/request-counter.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { isolatedStore } from "../helpers/isolated-store.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/**
 * Which cached answers roles share (docs/response-cache.md, "Which entries
 * roles share"), on the real PostgreSQL and Redis: a document whose fields
 * answer alike for every role is one entry for all of them; a document with
 * a role-restricted or role-dependent field keeps one entry per role, and a
 * VIEWER never receives what was cached for an ADMIN. Authorization still
 * runs before every hit.
 */

const DASHBOARD = `query Dashboard {
  projects(first: 5) { totalCount edges { node { id name deploymentCount
    latestDeployment { id status }
    deployments(first: 2) { edges { node { id status createdBy { email } } } } } } }
}`;
/** Role-free too; read by the removal test alone (tests run shuffled: each its own documents). */
const PROJECTS = `{ projects(first: 4) { totalCount edges { node { id name } } } }`;
const WITH_KEYS = `{ projects(first: 2) { totalCount } apiKeys(first: 5) { totalCount edges { node { name role } } } }`;
const code = (res: { body: { errors?: any[] } }) => res.body.errors?.[0]?.extensions?.code;
const xcache = (res: { headers: Headers }) => res.headers.get("x-cache");

describe("response cache: entries shared by roles only where the answer cannot differ", () => {
  let t: TestApp;
  let owner: string;
  let admin: string;
  let developer: string;
  let viewer: string;
  // Each test in a minute of its own (rate-limit windows), whatever the wall clock does.
  const clock = new ManualClock(hourStart(Date.now()) + 1_000);

  beforeAll(async () => {
    t = await createTestApp({ store: isolatedStore(), responseCache: { ttlSeconds: DEFAULT_CACHE_TTL_SECONDS }, clock: clock.now });
    owner = await t.memberToken("acme", "OWNER");
    admin = await t.memberToken("acme", "ADMIN");
    developer = await t.memberToken("acme", "DEVELOPER");
    viewer = await t.memberToken("acme", "VIEWER");
  });
  afterAll(async () => {
    await t?.close();
    await t?.store.close();
  });
  beforeEach(() => clock.advance(60_000));

  async function read(q: string, token: string, variables?: Record<string, unknown>) {
    const res = await t.gql(q, { token, variables });
    await t.settle();
    return res;
  }
  async function mutate(q: string, token: string, variables: Record<string, unknown>) {
    const res = await t.gql(q, { token, variables });
    expect(res.body.errors, q).toBeUndefined();
    return res.body.data;
  }

  it("a role-free selection read by a VIEWER then an ADMIN is one entry: the second read is a HIT with the same answer", async () => {
    const first = await read(DASHBOARD, viewer);
    expect(first.body.errors).toBeUndefined();
    expect(xcache(first)).toBe("MISS");
    const byAdmin = await read(DASHBOARD, admin);
    expect(xcache(byAdmin)).toBe("HIT");
    expect(byAdmin.body).toEqual(first.body);
    for (const token of [developer, owner]) expect(xcache(await read(DASHBOARD, token))).toBe("HIT");
    // The answer is the one every role gets uncached.
    const uncached = await t.gql(DASHBOARD, { token: admin, headers: { "cache-control": "no-cache" } });
    expect(uncached.body).toEqual(first.body);
    // After a change, one miss for all roles, not one per role.
    const projectId = first.body.data.projects.edges[0].node.id;
    await mutate(`mutation($i: UpdateProjectInput!) { updateProject(input: $i) { project { id } } }`, developer, { i: { id: projectId, name: "Renamed for roles" } });
    expect(xcache(await read(DASHBOARD, admin))).toBe("MISS");
    const after = await read(DASHBOARD, viewer);
    expect(xcache(after)).toBe("HIT");
    expect(after.body.data.projects.edges.map((e: any) => e.node.name)).toContain("Renamed for roles");
  });

  it("a selection with a role-restricted field keeps per-role entries: a VIEWER never gets the ADMIN's answer", async () => {
    await mutate(`mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } } }`, owner, { i: { name: "ci", role: "DEVELOPER" } });
    const byAdmin = await read(WITH_KEYS, admin);
    expect(byAdmin.body.errors).toBeUndefined();
    expect(byAdmin.body.data.apiKeys.edges).toContainEqual({ node: { name: "ci", role: "DEVELOPER" } });
    expect(xcache(await read(WITH_KEYS, admin))).toBe("HIT");
    // Without the role in this key, this read would be a HIT carrying the ADMIN's apiKeys.
    const byViewer = await read(WITH_KEYS, viewer);
    expect(xcache(byViewer)).not.toBe("HIT");
    expect(code(byViewer)).toBe("FORBIDDEN");
    expect(byViewer.body.data?.apiKeys ?? null).toBeNull();
    // An OWNER may read it too, but under an entry of its own.
    expect(xcache(await read(WITH_KEYS, owner))).toBe("MISS");
  });

  it("a selection with a role-dependent field (node, which finds an audit entry for ADMINs only) keeps per-role entries", async () => {
    const log = await read(`{ auditLog(first: 1) { edges { node { id action } } } }`, owner);
    const entry = log.body.data.auditLog.edges[0].node;
    const q = `query($id: ID!) { node(id: $id) { id ... on AuditLogEntry { action } } }`;
    const byAdmin = await read(q, admin, { id: entry.id });
    expect(byAdmin.body.data.node).toEqual({ id: entry.id, action: entry.action });
    expect(xcache(await read(q, admin, { id: entry.id }))).toBe("HIT");
    // The VIEWER's answer is another (no such node): without the role in the key it would be the ADMIN's.
    const byViewer = await read(q, viewer, { id: entry.id });
    expect(xcache(byViewer)).toBe("MISS");
    expect(byViewer.body.errors).toBeUndefined();
    expect(byViewer.body.data.node).toBeNull();
  });

  it("a member removed or downgraded gets no cached data from a shared entry: authorization runs before the hit", async () => {
    const invited = await mutate(`mutation($i: InviteMemberInput!) { inviteMember(input: $i) { membership { id } } }`, owner, {
      i: { email: "leaving-admin@acme.test", role: "ADMIN" },
    });
    const leaving = await t.token("leaving-admin@acme.test", "acme");
    const membershipId = invited.inviteMember.membership.id;
    expect(xcache(await read(WITH_KEYS, leaving))).toBe("MISS");
    // Downgraded to VIEWER: the role-free dashboard is still theirs to read (shared with the VIEWERs),
    // the ADMIN's apiKeys are not, though an ADMIN has just cached them under the new generation.
    await mutate(`mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { membership { id } } }`, owner, {
      i: { membershipId, role: "VIEWER" },
    });
    expect(xcache(await read(WITH_KEYS, admin))).toBe("MISS");
    expect(xcache(await read(WITH_KEYS, admin))).toBe("HIT");
    const demoted = await read(WITH_KEYS, leaving);
    expect(code(demoted)).toBe("FORBIDDEN");
    expect(demoted.body.data?.apiKeys ?? null).toBeNull();
    expect(xcache(demoted)).not.toBe("HIT");
    expect(xcache(await read(PROJECTS, viewer))).toBe("MISS");
    expect(xcache(await read(PROJECTS, leaving))).toBe("HIT");
    // Removed: the entry every role shares is there, the removed member gets none of it.
    await mutate(`mutation($i: RemoveMemberInput!) { removeMember(input: $i) { removedMembershipId } }`, owner, { i: { membershipId } });
    expect(xcache(await read(PROJECTS, admin))).toBe("MISS");
    expect(xcache(await read(PROJECTS, viewer))).toBe("HIT");
    const removed = await read(PROJECTS, leaving);
    expect(removed.status).toBe(403);
    expect(code(removed)).toBe("TENANT_ACCESS_DENIED");
    expect(removed.body.data ?? null).toBeNull();
    expect(xcache(removed)).not.toBe("HIT");
  });
});
