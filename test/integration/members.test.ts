import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Directory } from "../../src/tenancy/directory.ts";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { createReplica, sharedStores, type Gql } from "../helpers/replica.ts";
import { tenantRows } from "../helpers/placements.ts";

/**
 * Members: the connection, invitations (user created or reused by e-mail),
 * role changes and removal, the OWNER rules, and changes that hold on the
 * member's very next request on every replica (two apps, each with its own
 * connections and directory, sharing the store as two processes would).
 */

const gid = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString("base64");
const INVITE = `mutation($i: InviteMemberInput!) { inviteMember(input: $i) { membership { id role user { email } } } }`;
const UPDATE = `mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { membership { id role } } }`;
const REMOVE = `mutation($i: RemoveMemberInput!) { removeMember(input: $i) { removedMembershipId } }`;
const ROLE = `{ viewer { role } tenant { slug } }`;

describe("members", () => {
  let t: TestApp;
  let replica: { gql: Gql; close(): Promise<void> };
  const [storeA, storeB] = sharedStores(2);
  let owner: string;
  let admin: string;
  let acmeId: string;

  const membershipOf = async (email: string) => {
    const user = await t.clients.platform.user.findUniqueOrThrow({ where: { email } });
    return t.clients.platform.membership.findUniqueOrThrow({ where: { tenantId_userId: { tenantId: acmeId, userId: user.id } } });
  };

  beforeAll(async () => {
    t = await createTestApp({ store: storeA });
    replica = createReplica(t, storeB!);
    owner = await t.memberToken("acme", "OWNER");
    admin = await t.memberToken("acme", "ADMIN");
    acmeId = (await t.clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
    seed = {
      users: await t.clients.platform.user.findMany(),
      memberships: await t.clients.platform.membership.findMany({ where: { tenantId: acmeId } }),
    };
  });
  // Every test starts from the seed's users and acme memberships (roles as seeded;
  // invited, promoted or removed ones put back), with their cached entries evicted.
  let seed: { users: { id: string; authSubject: string }[]; memberships: Awaited<ReturnType<typeof membershipOf>>[] };
  beforeEach(async () => {
    const db = t.clients.platform;
    const directory = new Directory(db, storeA!);
    const made = await db.user.findMany({ where: { id: { notIn: seed.users.map((u) => u.id) } } });
    const now = await db.membership.findMany({ where: { tenantId: acmeId } });
    await db.membership.deleteMany({ where: { tenantId: acmeId, id: { notIn: seed.memberships.map((m) => m.id) } } });
    await db.user.deleteMany({ where: { id: { in: made.map((u) => u.id) } } });
    for (const m of seed.memberships) await db.membership.upsert({ where: { tenantId_id: { tenantId: m.tenantId, id: m.id } }, create: m, update: { role: m.role } });
    for (const m of [...now, ...seed.memberships]) await directory.invalidateMembership(m.tenantId, m.userId);
    for (const u of made) await directory.invalidateUser(u.authSubject);
  });
  afterAll(async () => {
    await replica?.close();
    await t?.close();
    await storeA!.close();
    if (storeB !== storeA) await storeB!.close();
  });

  it("lists the members as a connection, oldest first, for any member", async () => {
    const token = await t.memberToken("acme", "VIEWER");
    const page1 = await t.gql(`{ members(first: 2) { totalCount edges { cursor node { role user { email } tenant { slug } } } pageInfo { hasNextPage endCursor } } }`, { token });
    expect(page1.body.errors).toBeUndefined();
    expect(page1.body.data.members.totalCount).toBe(4);
    expect(page1.body.data.members.edges.map((e: any) => e.node.tenant.slug)).toEqual(["acme", "acme"]);
    const page2 = await t.gql(`query($a: String) { members(first: 5, after: $a) { edges { node { role } } pageInfo { hasNextPage } } }`, {
      token,
      variables: { a: page1.body.data.members.pageInfo.endCursor },
    });
    expect(page2.body.data.members.edges).toHaveLength(2);
    expect(page2.body.data.members.pageInfo.hasNextPage).toBe(false);
    const roles = [...page1.body.data.members.edges, ...page2.body.data.members.edges].map((e: any) => e.node.role).sort();
    expect(roles).toEqual(["ADMIN", "DEVELOPER", "OWNER", "VIEWER"]);
  });

  it("invites a new person: user created with the lower-cased e-mail as subject, usable at once", async () => {
    // A lookup before the invitation caches "unknown subject" for a moment.
    const early = await t.gql(ROLE, { token: await t.token("new.person@example.test", "acme") });
    expect(early.status).toBe(401);
    const invites = { tenantId: acmeId, action: "member.invite" };
    const earlier = (await t.clients.platform.auditLogEntry.findMany({ where: invites, select: { id: true } })).map((e) => e.id);
    const res = await t.gql(INVITE, { token: admin, variables: { i: { email: "New.Person@Example.TEST", role: "DEVELOPER", name: "New Person" } } });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.inviteMember.membership).toMatchObject({ role: "DEVELOPER", user: { email: "new.person@example.test" } });
    const user = await t.clients.platform.user.findUniqueOrThrow({ where: { email: "new.person@example.test" } });
    expect(user).toMatchObject({ authSubject: "new.person@example.test", name: "New Person" });
    const me = await t.gql(ROLE, { token: await t.token("new.person@example.test", "acme") });
    expect(me.body.data).toEqual({ viewer: { role: "DEVELOPER" }, tenant: { slug: "acme" } });
    const entries = await t.clients.platform.auditLogEntry.findMany({ where: { ...invites, id: { notIn: earlier } } });
    expect(entries.map((e) => e.targetId)).toEqual([res.body.data.inviteMember.membership.id]);
  });

  it("reuses an existing identity from another tenant, and refuses a duplicate membership", async () => {
    const before = await t.clients.platform.user.count();
    const res = await t.gql(INVITE, { token: admin, variables: { i: { email: "owner@globex.test", role: "VIEWER" } } });
    expect(res.body.errors).toBeUndefined();
    expect(await t.clients.platform.user.count()).toBe(before);
    const dup = await t.gql(INVITE, { token: admin, variables: { i: { email: "OWNER@globex.test", role: "VIEWER" } } });
    expect(dup.body.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "email" });
    // The globex owner now enters acme as a VIEWER with the same token subject.
    const me = await t.gql(ROLE, { token: await t.token("owner@globex.test", "acme") });
    expect(me.body.data.viewer.role).toBe("VIEWER");
  });

  it("only an OWNER grants OWNER", async () => {
    const byAdmin = await t.gql(INVITE, { token: admin, variables: { i: { email: "co-owner@example.test", role: "OWNER" } } });
    expect(byAdmin.body.errors?.[0].extensions).toMatchObject({ code: "FORBIDDEN", requires: "OWNER" });
    expect(await t.clients.platform.user.count({ where: { email: "co-owner@example.test" } })).toBe(0);
    const dev = await membershipOf("developer@acme.test");
    const promote = await t.gql(UPDATE, { token: admin, variables: { i: { membershipId: gid("Membership", dev.id), role: "OWNER" } } });
    expect(promote.body.errors?.[0].extensions).toMatchObject({ code: "FORBIDDEN", requires: "OWNER" });
    const ownerMembership = await membershipOf("owner@acme.test");
    const demote = await t.gql(UPDATE, { token: admin, variables: { i: { membershipId: gid("Membership", ownerMembership.id), role: "ADMIN" } } });
    expect(demote.body.errors?.[0].extensions).toMatchObject({ code: "FORBIDDEN", requires: "OWNER" });
    const remove = await t.gql(REMOVE, { token: admin, variables: { i: { membershipId: gid("Membership", ownerMembership.id) } } });
    expect(remove.body.errors?.[0].extensions).toMatchObject({ code: "FORBIDDEN", requires: "OWNER" });
    expect((await membershipOf("owner@acme.test")).role).toBe("OWNER");
  });

  it("the last OWNER can be neither demoted nor removed", async () => {
    const ownerMembership = await membershipOf("owner@acme.test");
    const demote = await t.gql(UPDATE, { token: owner, variables: { i: { membershipId: gid("Membership", ownerMembership.id), role: "ADMIN" } } });
    expect(demote.body.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "role" });
    const remove = await t.gql(REMOVE, { token: owner, variables: { i: { membershipId: gid("Membership", ownerMembership.id) } } });
    expect(remove.body.errors?.[0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "membershipId" });
    expect((await membershipOf("owner@acme.test")).role).toBe("OWNER");
  });

  it("a role change holds on the member's very next request, on both replicas", async () => {
    const token = await t.memberToken("acme", "VIEWER");
    // Both replicas have the membership cached.
    expect((await t.gql(ROLE, { token })).body.data.viewer.role).toBe("VIEWER");
    expect((await replica.gql(ROLE, { token })).body.data.viewer.role).toBe("VIEWER");
    const m = await membershipOf("viewer@acme.test");
    const res = await t.gql(UPDATE, { token: admin, variables: { i: { membershipId: gid("Membership", m.id), role: "DEVELOPER" } } });
    expect(res.body.errors).toBeUndefined();
    expect((await replica.gql(ROLE, { token })).body.data.viewer.role).toBe("DEVELOPER");
    expect((await t.gql(ROLE, { token })).body.data.viewer.role).toBe("DEVELOPER");
    const create = await replica.gql(`mutation { createProject(input: { name: "By The Promoted" }) { project { id } } }`, { token });
    expect(create.body.errors).toBeUndefined();
  });

  it("an OWNER hands OWNER over; the former one can then be demoted", async () => {
    const updates = { tenantId: acmeId, action: "member.updateRole" };
    const before = await t.clients.platform.auditLogEntry.count({ where: updates });
    const adminM = await membershipOf("admin@acme.test");
    const up = await t.gql(UPDATE, { token: owner, variables: { i: { membershipId: gid("Membership", adminM.id), role: "OWNER" } } });
    expect(up.body.data.updateMemberRole.membership.role).toBe("OWNER");
    const ownerM = await membershipOf("owner@acme.test");
    const down = await t.gql(UPDATE, { token: owner, variables: { i: { membershipId: gid("Membership", ownerM.id), role: "ADMIN" } } });
    expect(down.body.errors).toBeUndefined();
    expect((await t.gql(ROLE, { token: owner })).body.data.viewer.role).toBe("ADMIN");
    expect(await t.clients.platform.auditLogEntry.count({ where: updates })).toBe(before + 2);
  });

  it("a removed member is refused on the very next request, on both replicas", async () => {
    const newOwner = owner;
    const token = await t.memberToken("acme", "DEVELOPER");
    expect((await t.gql(ROLE, { token })).status).toBe(200);
    expect((await replica.gql(ROLE, { token })).status).toBe(200);
    const m = await membershipOf("developer@acme.test");
    const res = await replica.gql(REMOVE, { token: newOwner, variables: { i: { membershipId: gid("Membership", m.id) } } });
    expect(res.body.data.removeMember.removedMembershipId).toBe(gid("Membership", m.id));
    for (const app of [t, replica]) {
      const after = await app.gql(ROLE, { token });
      expect(after.body.errors?.[0].extensions.code).toBe("TENANT_ACCESS_DENIED");
    }
    const again = await t.gql(REMOVE, { token: newOwner, variables: { i: { membershipId: gid("Membership", m.id) } } });
    expect(again.body.errors?.[0].extensions.code).toBe("NOT_FOUND");
    // Another tenant's membership id behaves like one that does not exist.
    // globex's rows, where they live (its placement under TEST_PLACEMENTS=spread).
    const globexDb = await tenantRows(t.clients, "globex");
    const globexOwner = await globexDb.membership.findFirstOrThrow({ where: { tenant: { slug: "globex" }, role: "OWNER" } });
    const foreign = await t.gql(REMOVE, { token: newOwner, variables: { i: { membershipId: gid("Membership", globexOwner.id) } } });
    expect(foreign.body.errors?.[0].extensions.code).toBe("NOT_FOUND");
    expect(await globexDb.membership.count({ where: { id: globexOwner.id } })).toBe(1);
  });
});
