import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { MIGRATIONS_DIR } from "../../src/db/migrate.ts";
import { placementFor, placementOf, type PlacementRef } from "../../src/db/placement-admin.ts";
import { relocatePooledTenant } from "../../src/db/placement-move.ts";
import { tenantKey } from "../../src/infra/store.ts";
import type { TestApp } from "../helpers/app.ts";
import { placementApp, sql } from "../helpers/placements.ts";

/**
 * Placements (issue 15 point 1): provisionTenant(placement:) creates and
 * migrates a schema or database of the tenant's own, atomically; every
 * placement has the same migrations, roles and RLS; db:migrate migrates
 * them all.
 */

const PROVISION = `mutation($input: ProvisionTenantInput!) {
  provisionTenant(input: $input) { tenant { id slug placement } owner { id email } }
}`;


describe("tenant placements", () => {
  const app = placementApp();
  const made = app.made;
  let t: TestApp;
  let admin: string;
  beforeAll(() => ({ t, admin } = app));

  async function provision(slug: string, placement?: string, extra: Record<string, unknown> = {}) {
    const res = await t.gql(PROVISION, {
      token: admin,
      variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` }, placement, ...extra } },
    });
    const id = res.body.data?.provisionTenant?.tenant?.id as string | undefined;
    if (id) {
      const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
      if (row.placement !== "POOLED") made.push(placementOf(row));
    }
    return res;
  }

  /**
   * A SCHEMA and a DATABASE tenant of the calling test's own (`${tag}-schema`, `${tag}-db`),
   * optionally with the owner's project "Placed <slug>" and the acme viewer invited as DEVELOPER,
   * so no test relies on what another one made.
   */
  async function placedPair(tag: string, opts: { project?: boolean; invited?: boolean } = {}) {
    const slugs = [`${tag}-schema`, `${tag}-db`] as const;
    for (const [slug, placement] of [[slugs[0], "SCHEMA"], [slugs[1], "DATABASE"]] as const) {
      expect((await provision(slug, placement)).body.errors).toBeUndefined();
      const owner = await t.token(`owner@${slug}.test`, slug);
      if (opts.project) {
        const created = await t.gql(`mutation { createProject(input: { name: "Placed ${slug}" }) { project { id } } }`, { token: owner });
        expect(created.body.errors).toBeUndefined();
      }
      if (opts.invited) {
        const invited = await t.gql(`mutation { inviteMember(input: { email: "viewer@acme.test", role: DEVELOPER }) { membership { id } } }`, { token: owner });
        expect(invited.body.errors).toBeUndefined();
      }
    }
    return slugs;
  }

  /** Per placement: the migration names, RLS-forced tables and policies, as the catalog says. */
  async function shape(ref: PlacementRef) {
    const url = t.clients.placements.admin.databaseUrl(ref);
    const schema = ref.placement === "SCHEMA" ? ref.name! : "public";
    const [migrations, tables, policies] = await Promise.all([
      sql(url, `SELECT migration_name FROM "${schema}"."_prisma_migrations" WHERE finished_at IS NOT NULL ORDER BY 1`),
      sql(url, `SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1`, [schema]),
      sql(url, `SELECT tablename, policyname, roles::text, cmd, qual, with_check FROM pg_policies WHERE schemaname = $1 ORDER BY 1, 2`, [schema], schema),
    ]);
    return { migrations, tables, policies };
  }

  it("a SCHEMA and a DATABASE tenant get their own placement, with the same migrations, tables and RLS, and their first rows", async () => {
    const pooled = await shape({ placement: "POOLED", server: null, name: null });
    for (const [slug, placement] of [["placed-schema", "SCHEMA"], ["placed-db", "DATABASE"]] as const) {
      const res = await provision(slug, placement);
      expect(res.body.errors).toBeUndefined();
      expect(res.body.data.provisionTenant.tenant).toMatchObject({ slug, placement });
      const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
      const ref = placementOf(row);
      expect(ref.placement).toBe(placement);
      expect(await t.clients.placements.admin.exists(ref)).toBe(true);
      expect(await shape(ref)).toEqual(pooled);
      // The tenant's first rows are in its placement: itself, its owner and membership, the provisioning entry.
      const url = t.clients.placements.admin.databaseUrl(ref);
      const schema = ref.placement === "SCHEMA" ? ref.name! : "public";
      const [copy] = await sql(url, `SELECT (SELECT count(*)::int FROM "${schema}".tenants WHERE id = $1) AS tenants,
          (SELECT count(*)::int FROM "${schema}".memberships WHERE tenant_id = $1 AND role = 'OWNER') AS owners,
          (SELECT count(*)::int FROM "${schema}".users) AS users,
          (SELECT count(*)::int FROM "${schema}".audit_log WHERE tenant_id = $1 AND action = 'tenant.provision') AS audit,
          (SELECT count(*)::int FROM "${schema}".tenants) AS all_tenants`, [row.id]);
      expect(copy).toEqual({ tenants: 1, owners: 1, users: 1, audit: 1, all_tenants: 1 });
    }
  });

  it("a placed tenant's owner works in its placement: its rows are written and read there, nowhere else", async () => {
    for (const slug of await placedPair("works")) {
      const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
      const ref = placementOf(row);
      const owner = await t.token(`owner@${slug}.test`, slug);
      const created = await t.gql(`mutation { createProject(input: { name: "Placed ${slug}" }) { project { id name } } }`, { token: owner });
      expect(created.body.errors).toBeUndefined();
      const listed = await t.gql(`{ tenant { slug placement } projects(first: 10) { totalCount edges { node { name } } } auditLog(first: 10) { edges { node { action } } } }`, { token: owner });
      expect(listed.body.errors).toBeUndefined();
      expect(listed.body.data.tenant).toEqual({ slug, placement: ref.placement });
      expect(listed.body.data.projects.edges.map((e: any) => e.node.name)).toEqual([`Placed ${slug}`]);
      expect(listed.body.data.auditLog.edges.map((e: any) => e.node.action)).toContain("project.create");
      // In the placement, and not in the shared tables.
      const schema = ref.placement === "SCHEMA" ? ref.name! : "public";
      const inPlacement = await sql(t.clients.placements.admin.databaseUrl(ref), `SELECT name FROM "${schema}".projects WHERE tenant_id = $1`, [row.id]);
      expect(inPlacement).toEqual([{ name: `Placed ${slug}` }]);
      expect(await t.clients.platform.project.count({ where: { tenantId: row.id } })).toBe(0);
    }
  });

  it("a placed tenant's members and API keys work, a revocation and a suspension take effect at once, and no other placement is reachable", async () => {
    const acmeViewer = await t.memberToken("acme", "VIEWER");
    const acmeProject = (await t.gql(`{ projects(first: 1) { edges { node { id } } } }`, { token: acmeViewer })).body.data.projects.edges[0].node.id;
    for (const slug of await placedPair("members", { project: true })) {
      const owner = await t.token(`owner@${slug}.test`, slug);
      // An identity of the main database (an acme viewer) becomes a member: one user, one id, in both.
      const acmeEmail = "viewer@acme.test";
      const invited = await t.gql(`mutation($e: EmailAddress!) { inviteMember(input: { email: $e, role: DEVELOPER }) { membership { id role } } }`, { token: owner, variables: { e: acmeEmail } });
      expect(invited.body.errors).toBeUndefined();
      const asMember = await t.token((await t.clients.platform.user.findFirstOrThrow({ where: { email: acmeEmail } })).authSubject, slug);
      const seen = await t.gql(`{ tenant { slug } projects(first: 5) { edges { node { name } } } }`, { token: asMember });
      expect(seen.body.errors).toBeUndefined();
      expect(seen.body.data.tenant.slug).toBe(slug);
      expect(seen.body.data.projects.edges.map((e: any) => e.node.name)).toEqual([`Placed ${slug}`]);
      // Another placement's object is not found from here, nor this one's from there.
      const foreign = await t.gql(`query($id: ID!) { node(id: $id) { id } }`, { token: asMember, variables: { id: acmeProject } });
      expect(foreign.body.data?.node ?? null).toBeNull();
      const placedProject = (await t.gql(`{ projects(first: 1) { edges { node { id } } } }`, { token: owner })).body.data.projects.edges[0].node.id;
      const back = await t.gql(`query($id: ID!) { node(id: $id) { id } }`, { token: acmeViewer, variables: { id: placedProject } });
      expect(back.body.data?.node ?? null).toBeNull();
      // An acme member that is not a member here is refused.
      const outsider = await t.token((await t.clients.platform.user.findFirstOrThrow({ where: { memberships: { some: { role: "OWNER", tenant: { slug: "acme" } } } } })).authSubject, slug);
      expect((await t.gql(`{ tenant { slug } }`, { token: outsider })).body.errors?.[0]?.extensions?.code).toBe("TENANT_ACCESS_DENIED");

      // An API key made here works, and stops at once when revoked.
      const key = await t.gql(`mutation { createApiKey(input: { name: "ci", role: VIEWER }) { secret apiKey { id } } }`, { token: owner });
      expect(key.body.errors).toBeUndefined();
      const { secret, apiKey } = key.body.data.createApiKey;
      const byKey = () => t.gql(`{ tenant { slug } }`, { headers: { "x-api-key": secret } });
      expect((await byKey()).body.data?.tenant?.slug).toBe(slug);
      const revoked = await t.gql(`mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { apiKey { revokedAt } } }`, { token: owner, variables: { i: { id: apiKey.id } } });
      expect(revoked.body.errors).toBeUndefined();
      expect((await byKey()).body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");

      // A platform suspension takes effect on the next request; reactivation restores.
      const tenantId = (await t.gql(`{ tenant { id } }`, { token: owner })).body.data.tenant.id;
      const suspend = await t.gql(`mutation($id: ID!) { suspendTenant(input: { tenantId: $id, reason: "placement test" }) { tenant { status } } }`, { token: admin, variables: { id: tenantId } });
      expect(suspend.body.errors).toBeUndefined();
      expect((await t.gql(`{ tenant { slug } }`, { token: owner })).body.errors?.[0]?.extensions?.code).toBe("TENANT_SUSPENDED");
      await t.gql(`mutation($id: ID!) { reactivateTenant(input: { tenantId: $id }) { tenant { status } } }`, { token: admin, variables: { id: tenantId } });
      expect((await t.gql(`{ tenant { slug } }`, { token: owner })).body.data?.tenant?.slug).toBe(slug);
      // The platform's entries are in the tenant's own log, in its placement.
      const log = await t.gql(`{ auditLog(first: 20) { edges { node { action } } } }`, { token: owner });
      expect(log.body.data.auditLog.edges.map((e: any) => e.node.action)).toEqual(expect.arrayContaining(["tenant.suspend", "tenant.reactivate", "member.invite"]));
    }
  });

  it("platform analytics cover every placement (tenantUsage, totals, auditLog), one audit entry per access, and fail closed", async () => {
    const pair = await placedPair("analytics", { project: true, invited: true });
    const Q = `{ platform {
      tenantUsage(first: 100) { edges { node { tenant { slug } projects deployments workflows members } } }
      totals { projects deployments }
      auditLog(first: 100, filter: { action: "project.create" }) { totalCount edges { node { tenant { slug } } } } } }`;
    const accesses = () => t.clients.platform.platformAuditEntry.count();
    const before = await accesses();
    const res = await t.gql(Q, { token: admin });
    expect(res.body.errors).toBeUndefined();
    // One entry per field that read across tenants (three), none more.
    expect(await accesses()).toBe(before + 3);
    const usage = new Map(res.body.data.platform.tenantUsage.edges.map((e: any) => [e.node.tenant.slug, e.node]));
    for (const slug of pair) {
      expect(usage.get(slug)).toMatchObject({ projects: 1, deployments: 0, workflows: 0, members: 2 });
    }
    // The shared tables' projects plus every placement's (other tests' placed tenants included), counted in each placement.
    let placedProjects = 0;
    for (const placed of await t.clients.platform.tenant.findMany({ where: { placement: { not: "POOLED" } } })) {
      const ref = placementOf(placed);
      const schema = ref.placement === "SCHEMA" ? ref.name! : "public";
      placedProjects += (await sql<{ n: number }>(t.clients.placements.admin.databaseUrl(ref), `SELECT count(*)::int AS n FROM "${schema}".projects`))[0]!.n;
    }
    expect(placedProjects).toBeGreaterThanOrEqual(2);
    const pooledProjects = await t.clients.platform.project.count();
    expect(res.body.data.platform.totals.projects).toBe(pooledProjects + placedProjects);
    const audit = res.body.data.platform.auditLog;
    expect(audit.edges.map((e: any) => e.node.tenant?.slug)).toEqual(expect.arrayContaining([...pair]));
    expect(audit.totalCount).toBe(audit.edges.length);

    // A placement that cannot be read fails the answer: no data, no partial page, no access recorded.
    const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug: pair[0] } });
    await sql(t.db.url, `ALTER SCHEMA "${row.placementName}" RENAME TO "${row.placementName}_off"`);
    try {
      const atFault = await accesses();
      const failed = await t.gql(Q, { token: admin });
      expect(failed.body.errors?.length).toBeGreaterThan(0);
      expect(failed.body.data?.platform?.tenantUsage ?? null).toBeNull();
      expect(failed.body.data?.platform?.totals ?? null).toBeNull();
      expect(await accesses()).toBe(atFault);
    } finally {
      await sql(t.db.url, `ALTER SCHEMA "${row.placementName}_off" RENAME TO "${row.placementName}"`);
    }
  });

  it("a POOLED tenant relocated into a schema keeps every row (counts and checksums), answers the same, and leaves the shared tables", async () => {
    const res = await provision("mover", undefined);
    expect(res.body.errors).toBeUndefined();
    const owner = await t.token("owner@mover.test", "mover");
    for (const name of ["One", "Two", "Three"]) {
      expect((await t.gql(`mutation { createProject(input: { name: "${name}" }) { project { id } } }`, { token: owner })).body.errors).toBeUndefined();
    }
    const Q = `{ tenant { slug } projects(first: 10, orderBy: { field: NAME, direction: ASC }) { edges { node { id name createdAt } } } members(first: 10) { edges { node { id role } } } auditLog(first: 20) { edges { node { id action } } } }`;
    const before = await t.gql(Q, { token: owner });
    expect(before.body.errors).toBeUndefined();
    const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug: "mover" } });
    const ref = placementFor(row.id, "SCHEMA");
    const moved = await relocatePooledTenant(t.clients.placements.admin, row.id, ref);
    made.push(ref);
    expect(moved.rows).toBeGreaterThan(5);
    await t.store.del(tenantKey(row.id, "info"));
    const after = await t.gql(Q.replace("tenant { slug }", "tenant { slug placement }"), { token: owner });
    expect(after.body.errors).toBeUndefined();
    expect(after.body.data.tenant.placement).toBe("SCHEMA");
    expect({ ...after.body.data, tenant: { slug: after.body.data.tenant.slug } }).toEqual(before.body.data);
    expect(await t.clients.platform.project.count({ where: { tenantId: row.id } })).toBe(0);
  });

  it("a failed provisioning leaves no placement, row or user behind", async () => {
    // Schemas are this database's own; databases are the server's, where other test files make theirs
    // meanwhile: the placements this provisioning made are the ones to look for.
    const schemas = () => sql(t.db.url, `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' ORDER BY 1`);
    const placementsBefore = await schemas();
    const created = vi.spyOn(t.clients.placements.admin, "create");
    const counts = async () => ({
      tenants: await t.clients.platform.tenant.count(),
      users: await t.clients.platform.user.count(),
      audit: await t.clients.platform.auditLogEntry.count(),
    });
    const before = await counts();
    // The owner's subject is another user's: the user insert fails after the placement was made and migrated.
    const taken = await t.clients.platform.user.findFirstOrThrow({ select: { authSubject: true } });
    for (const placement of ["SCHEMA", "DATABASE"]) {
      const res = await t.gql(PROVISION, {
        token: admin,
        variables: { input: { name: "x", slug: `failing-${placement.toLowerCase()}`, plan: "FREE", placement, owner: { email: `new-${placement}@x.test`, authSubject: taken.authSubject } } },
      });
      expect(res.body.errors?.length).toBeGreaterThan(0);
    }
    expect(await schemas()).toEqual(placementsBefore);
    expect(created.mock.calls.map(([ref]) => ref.placement).sort()).toEqual(["DATABASE", "SCHEMA"]);
    for (const [ref] of created.mock.calls) expect(await t.clients.placements.admin.exists(ref)).toBe(false);
    created.mockRestore();
    expect(await counts()).toEqual(before);
  });

  it("a provisioning is audited before its placement is made: one whose audit entry cannot be written makes no placement", async () => {
    // A real fault: the platform audit log refuses this provisioning's entry (a trigger of the test database).
    await sql(t.db.url, `CREATE FUNCTION refuse_unaudited() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.action = 'tenant.provision' AND NEW.metadata::text LIKE '%unaudited-%' THEN RAISE EXCEPTION 'audit refused'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER refuse_unaudited BEFORE INSERT ON platform_audit_log FOR EACH ROW EXECUTE FUNCTION refuse_unaudited()`);
    const created = vi.spyOn(t.clients.placements.admin, "create");
    try {
      const audited = await t.clients.platform.platformAuditEntry.count();
      for (const placement of ["SCHEMA", "DATABASE"]) {
        const slug = `unaudited-${placement.toLowerCase()}`;
        const res = await t.gql(PROVISION, { token: admin, variables: { input: { name: slug, slug, plan: "FREE", placement, owner: { email: `owner@${slug}.test` } } } });
        expect(res.body.errors?.length).toBeGreaterThan(0);
        expect(await t.clients.platform.tenant.count({ where: { slug } })).toBe(0);
      }
      // Nothing was made, not even for a moment (a placement made then dropped would show here).
      expect(created).not.toHaveBeenCalled();
      expect(await t.clients.platform.platformAuditEntry.count()).toBe(audited);
    } finally {
      created.mockRestore();
      await sql(t.db.url, `DROP TRIGGER refuse_unaudited ON platform_audit_log; DROP FUNCTION refuse_unaudited()`);
    }
  });

  it("a placementTarget that is not a configured server is BAD_USER_INPUT, before anything is made", async () => {
    const res = await provision("nowhere", "DATABASE", { placementTarget: "elsewhere" });
    expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "placementTarget" });
    const pooledTarget = await provision("pooled-target", "SCHEMA", { placementTarget: "default" });
    expect(pooledTarget.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "placementTarget" });
    expect(await t.clients.platform.tenant.count({ where: { slug: { in: ["nowhere", "pooled-target"] } } })).toBe(0);
  });

  it("migrating (db:migrate) applies a new migration to the main database and to every placement", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tg-migrations-"));
    try {
      await cp(MIGRATIONS_DIR, dir, { recursive: true });
      await mkdir(path.join(dir, "29991231000000_probe"));
      await writeFile(path.join(dir, "29991231000000_probe", "migration.sql"), `CREATE TABLE "placement_probe" (id int);`);
      const { main, placements } = await t.clients.placements.admin.migrateAll(() => {}, dir);
      expect(main.applied).toEqual(["29991231000000_probe"]);
      expect(placements).toBe(made.length);
      for (const ref of [{ placement: "POOLED", server: null, name: null } as PlacementRef, ...made]) {
        const schema = ref.placement === "SCHEMA" ? ref.name! : "public";
        const [found] = await sql(t.clients.placements.admin.databaseUrl(ref), `SELECT to_regclass($1) IS NOT NULL AS ok`, [`"${schema}".placement_probe`]);
        expect(found!.ok).toBe(true);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
      // The probe undone everywhere: a placement made later (by a test run after this one) has the same shape as the main database.
      for (const ref of [{ placement: "POOLED", server: null, name: null } as PlacementRef, ...made]) {
        const schema = ref.placement === "SCHEMA" ? ref.name! : "public";
        await sql(
          t.clients.placements.admin.databaseUrl(ref),
          `DROP TABLE IF EXISTS "${schema}".placement_probe; DELETE FROM "${schema}"."_prisma_migrations" WHERE migration_name = '29991231000000_probe'`,
        );
      }
    }
  });
});
