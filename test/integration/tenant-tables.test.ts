import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APP_ROLE, PLATFORM_ROLE } from "../../src/db/clients.ts";
import { createTestDatabase, ownerClient, seedTwoTenants, type TestDatabase } from "../helpers/db.ts";
import { query, readCatalog, type Catalog } from "../helpers/catalog.ts";
import { parsePrismaSchema } from "../helpers/prisma-schema.ts";

/** Row-level security and the roles (wall 2's setup): tenant tables, policies, grants. */

const dropLater: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dropLater.map((d) => d.drop()));
});

// ---------------------------------------------------------------------------
// Row-level security and the roles (wall 2's setup).

describe("tenant tables and roles", () => {
  let db: TestDatabase;
  let catalog: Catalog;
  let seeded: Awaited<ReturnType<typeof seedTwoTenants>>;
  const schema = parsePrismaSchema();

  beforeAll(async () => {
    db = await createTestDatabase();
    dropLater.push(db);
    catalog = await readCatalog(db.url);
    const owner = ownerClient(db.url);
    try {
      seeded = await seedTwoTenants(owner);
    } finally {
      await owner.$disconnect();
    }
  });

  const tenantTables = () => [...new Set(catalog.columns.filter((c) => c.column === "tenant_id").map((c) => c.table))].sort();

  it("the tenant tables are exactly the tables of the Prisma models that have tenantId", () => {
    const fromSchema = [...schema.models.values()]
      .filter((m) => m.fields.some((f) => f.name === "tenantId"))
      .map((m) => m.table)
      .sort();
    expect(fromSchema.length).toBeGreaterThan(0);
    expect(tenantTables()).toEqual(fromSchema);
  });

  it("every tenant table: tenant_id NOT NULL, primary key starts with tenant_id, RLS enabled and forced, policies for the app role", async () => {
    const policies = await query<{ tablename: string; policyname: string; roles: string[]; qual: string | null; with_check: string | null; cmd: string }>(
      db.url,
      `SELECT tablename, policyname, roles::text[] AS roles, qual, with_check, cmd FROM pg_policies WHERE schemaname = current_schema()`,
    );
    const problems: string[] = [];
    for (const table of tenantTables()) {
      const col = catalog.columns.find((c) => c.table === table && c.column === "tenant_id")!;
      if (!col.notnull) problems.push(`${table}.tenant_id is nullable`);
      const pk = catalog.indexes.find((i) => i.table === table && i.primary);
      if (pk?.columns[0] !== "tenant_id") problems.push(`${table}: primary key [${pk?.columns}] does not start with tenant_id`);
      const t = catalog.tables.find((x) => x.table === table)!;
      if (!t.rls) problems.push(`${table}: row level security not enabled`);
      if (!t.force_rls) problems.push(`${table}: row level security not forced`);
      const own = policies.filter((p) => p.tablename === table);
      if (own.length === 0) problems.push(`${table}: no policies`);
      const app = own.filter((p) => p.roles.includes(APP_ROLE) || p.roles.includes("public"));
      if (app.length === 0) problems.push(`${table}: no policy for ${APP_ROLE}`);
      for (const p of app) {
        // An INSERT policy has no USING: its WITH CHECK is checked below.
        if (p.cmd !== "INSERT" && !/app_current_tenant\(\)/.test(p.qual ?? "")) problems.push(`${table}: policy ${p.policyname} USING (${p.qual}) ignores the current tenant`);
        if (p.cmd !== "SELECT" && p.cmd !== "DELETE" && !/app_current_tenant\(\)/.test(p.with_check ?? p.qual ?? ""))
          problems.push(`${table}: policy ${p.policyname} WITH CHECK (${p.with_check}) ignores the current tenant`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("foreign keys between tenant tables include tenant_id, and unique keys of tenant tables include it (known global exceptions listed)", () => {
    const tenant = new Set(tenantTables());
    // Credential lookup needs a global unique on the key hash (a key is
    // resolved before its tenant is known). These are the only allowed ones.
    const GLOBAL_UNIQUES = new Set(["api_keys(secret_hash)", "api_keys(previous_secret_hash)"]);
    const problems: string[] = [];
    for (const fk of catalog.foreignKeys) {
      if (tenant.has(fk.table) && tenant.has(fk.ref_table) && !fk.columns.includes("tenant_id"))
        problems.push(`foreign key ${fk.name} [${fk.columns}] between tenant tables lacks tenant_id`);
    }
    for (const i of catalog.indexes) {
      if (!tenant.has(i.table) || !i.unique) continue;
      if (!i.columns.includes("tenant_id") && !GLOBAL_UNIQUES.has(`${i.table}(${i.columns})`))
        problems.push(`unique index ${i.index} on ${i.table}(${i.columns}) lacks tenant_id`);
    }
    expect(problems).toEqual([]);
  });

  it("the app and platform roles are neither superuser nor BYPASSRLS, and own no table", async () => {
    const roles = await query<{ rolname: string; rolsuper: boolean; rolbypassrls: boolean }>(
      db.url,
      `SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname`,
      [[APP_ROLE, PLATFORM_ROLE]],
    );
    expect(roles).toEqual([
      { rolname: APP_ROLE, rolsuper: false, rolbypassrls: false },
      { rolname: PLATFORM_ROLE, rolsuper: false, rolbypassrls: false },
    ]);
    const owned = catalog.tables.filter((t) => t.owner === APP_ROLE || t.owner === PLATFORM_ROLE).map((t) => `${t.table} (${t.owner})`);
    expect(owned).toEqual([]);
  });

  describe("as the app role", () => {
    /** Runs statements in one transaction as tenantgraph_app with app.tenant_id set; rolls back. */
    async function asApp<T extends pg.QueryResultRow>(tenantId: string, sql: string, params: unknown[] = [], userId = ""): Promise<T[]> {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query("BEGIN");
        await client.query(`SET LOCAL ROLE ${APP_ROLE}`);
        await client.query(`SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true)`, [tenantId, userId]);
        return (await client.query<T>(sql, params)).rows;
      } finally {
        await client.query("ROLLBACK").catch(() => {});
        await client.end();
      }
    }

    it("reads and appends to its tenant's audit log", async () => {
      const { A } = seeded;
      expect(await asApp(A.tenantId, `SELECT id FROM audit_log`)).toEqual([{ id: A.auditEntryId }]);
      // As the session's user (its global id, as the server writes it).
      const actorId = Buffer.from(`User:${A.userId}`).toString("base64");
      const inserted = await asApp<{ id: string }>(
        A.tenantId,
        `INSERT INTO audit_log (tenant_id, action, actor_type, actor_id) VALUES ($1, 'test.append', 'USER', $2) RETURNING id`,
        [A.tenantId, actorId],
        A.userId,
      );
      expect(inserted).toHaveLength(1);
      // A SYSTEM entry is the platform's to write.
      await expect(
        asApp(A.tenantId, `INSERT INTO audit_log (tenant_id, action, actor_type) VALUES ($1, 'test.append', 'SYSTEM')`, [A.tenantId], A.userId),
      ).rejects.toThrow(/row-level security/);
    });

    it("cannot UPDATE or DELETE the audit log, even its own tenant's rows", async () => {
      const { A } = seeded;
      await expect(
        asApp(A.tenantId, `UPDATE audit_log SET action = 'tampered' WHERE tenant_id = $1`, [A.tenantId]),
      ).rejects.toMatchObject({ code: "42501", message: expect.stringMatching(/permission denied/) });
      await expect(asApp(A.tenantId, `DELETE FROM audit_log WHERE tenant_id = $1`, [A.tenantId])).rejects.toMatchObject({
        code: "42501",
      });
      const rows = await query<{ action: string }>(db.url, `SELECT action FROM audit_log WHERE id = $1`, [A.auditEntryId]);
      expect(rows).toEqual([{ action: "project.create" }]);
    });

    it("cannot change tenants", async () => {
      const { A } = seeded;
      await expect(asApp(A.tenantId, `UPDATE tenants SET name = 'x' WHERE id = $1`, [A.tenantId])).rejects.toMatchObject({ code: "42501" });
      await expect(asApp(A.tenantId, `INSERT INTO tenants (slug, name) VALUES ('evil', 'evil')`)).rejects.toMatchObject({ code: "42501" });
    });
  });
});
