import { createHash } from "node:crypto";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APP_ROLE, PLATFORM_ROLE } from "../../src/db/clients.ts";
import { MIGRATIONS_DIR, runMigrations } from "../../src/db/migrate.ts";
import { getDatamodel } from "../../src/generated/pothos-types.ts";
import {
  createEmptyDatabase,
  createTestDatabase,
  migrateTestDatabase,
  ownerClient,
  seedTwoTenants,
  testServerUrl,
  type TestDatabase,
} from "../helpers/db.ts";
import { isRelationField, parsePrismaSchema, type ParsedField, type ParsedSchema } from "../helpers/prisma-schema.ts";

const dropLater: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dropLater.map((d) => d.drop()));
});

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

async function migrationNames(dir = MIGRATIONS_DIR): Promise<string[]> {
  return (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

describe("runMigrations", () => {
  it("applies every migration once, records it with its checksum, and applies nothing the second time", async () => {
    const db = await createEmptyDatabase();
    dropLater.push(db);
    const names = await migrationNames();
    expect(names.length).toBeGreaterThan(0);

    const first = await migrateTestDatabase(testServerUrl(), db.url);
    expect(first.applied).toEqual(names);
    expect(first.skipped).toEqual([]);

    const second = await migrateTestDatabase(testServerUrl(), db.url);
    expect(second.applied).toEqual([]);
    expect(second.skipped).toEqual(names);

    const rows = await query<{ migration_name: string; checksum: string; finished_at: Date | null; rolled_back_at: Date | null }>(
      db.url,
      `SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" ORDER BY migration_name`,
    );
    const expected = await Promise.all(
      names.map(async (name) => ({
        migration_name: name,
        checksum: createHash("sha256")
          .update(await readFile(path.join(MIGRATIONS_DIR, name, "migration.sql"), "utf8"))
          .digest("hex"),
      })),
    );
    expect(rows.map((r) => ({ migration_name: r.migration_name, checksum: r.checksum }))).toEqual(expected);
    for (const r of rows) {
      expect(r.finished_at, r.migration_name).toBeInstanceOf(Date);
      expect(r.rolled_back_at, r.migration_name).toBeNull();
    }
  });

  describe("with a copy of the migrations", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), "tg-migrations-"));
      await cp(MIGRATIONS_DIR, dir, { recursive: true });
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it("applies only a newly added migration, then refuses a migration edited after it was applied", async () => {
      const db = await createEmptyDatabase();
      dropLater.push(db);
      const names = await migrationNames(dir);
      expect((await migrateTestDatabase(testServerUrl(), db.url, { dir })).applied).toEqual(names);

      const added = "29991231000000_added_later";
      await mkdir(path.join(dir, added));
      await writeFile(path.join(dir, added, "migration.sql"), `CREATE TABLE "zz_added_later" ("id" INTEGER PRIMARY KEY);\n`);
      const again = await migrateTestDatabase(testServerUrl(), db.url, { dir });
      expect(again.applied).toEqual([added]);
      expect(again.skipped).toEqual(names);

      const edited = path.join(dir, names[0]!, "migration.sql");
      await writeFile(edited, `${await readFile(edited, "utf8")}\n-- edited after it was applied\n`);
      await expect(runMigrations(db.url, { dir })).rejects.toThrow(/checksum/);
      // Refused before anything ran: the history is unchanged.
      const rows = await query<{ n: number }>(db.url, `SELECT count(*)::int AS n FROM "_prisma_migrations"`);
      expect(rows[0]!.n).toBe(names.length + 1);
    });
  });
});

// ---------------------------------------------------------------------------
// The Prisma schema and the migrated database agree.

interface ColumnRow {
  table: string;
  column: string;
  notnull: boolean;
  type: string;
  hasdef: boolean;
  base_typname: string;
  base_typtype: string;
  is_array: boolean;
}
interface IndexRow {
  table: string;
  index: string;
  primary: boolean;
  unique: boolean;
  partial: boolean;
  expr: boolean;
  columns: string[];
}
interface ForeignKeyRow {
  name: string;
  table: string;
  ref_table: string;
  on_delete: string;
  on_update: string;
  columns: string[];
  ref_columns: string[];
}
interface TableRow {
  table: string;
  rls: boolean;
  force_rls: boolean;
  owner: string;
}

interface Catalog {
  tables: TableRow[];
  columns: ColumnRow[];
  indexes: IndexRow[];
  foreignKeys: ForeignKeyRow[];
  enums: Map<string, string[]>;
}

async function readCatalog(url: string): Promise<Catalog> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const tables = await client.query<TableRow>(`
      SELECT c.relname AS table, c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls,
             pg_get_userbyid(c.relowner) AS owner
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')`);
    const columns = await client.query<ColumnRow>(`
      SELECT c.relname AS table, a.attname AS column, a.attnotnull AS notnull,
             format_type(a.atttypid, a.atttypmod) AS type, a.atthasdef AS hasdef,
             COALESCE(et.typname, t.typname)::text AS base_typname,
             COALESCE(et.typtype, t.typtype)::text AS base_typtype,
             t.typcategory = 'A' AS is_array
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
       WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`);
    const indexes = await client.query<IndexRow>(`
      SELECT t.relname AS table, i.relname AS index, ix.indisprimary AS primary, ix.indisunique AS unique,
             ix.indpred IS NOT NULL AS partial, ix.indexprs IS NOT NULL AS expr,
             ARRAY(SELECT a.attname || CASE WHEN (ix.indoption[k.ord - 1] & 1) = 1 THEN ' DESC' ELSE '' END
                     FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                    WHERE k.ord <= ix.indnkeyatts
                    ORDER BY k.ord)::text[] AS columns
        FROM pg_index ix
        JOIN pg_class i ON i.oid = ix.indexrelid
        JOIN pg_class t ON t.oid = ix.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
       WHERE n.nspname = current_schema()`);
    const foreignKeys = await client.query<ForeignKeyRow>(`
      SELECT c.conname AS name, t.relname AS table, ft.relname AS ref_table,
             c.confdeltype::text AS on_delete, c.confupdtype::text AS on_update,
             ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[] AS columns,
             ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.ord)::text[] AS ref_columns
        FROM pg_constraint c
        JOIN pg_class t ON t.oid = c.conrelid
        JOIN pg_class ft ON ft.oid = c.confrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
       WHERE c.contype = 'f' AND n.nspname = current_schema()`);
    const enums = await client.query<{ name: string; labels: string[] }>(`
      SELECT t.typname::text AS name, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text[] AS labels
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
       WHERE n.nspname = current_schema() GROUP BY t.typname`);
    return {
      tables: tables.rows,
      columns: columns.rows,
      indexes: indexes.rows,
      foreignKeys: foreignKeys.rows,
      enums: new Map(enums.rows.map((r) => [r.name, r.labels])),
    };
  } finally {
    await client.end();
  }
}

/** The PostgreSQL type (format_type) Prisma Migrate would create for a scalar field. */
function expectedType(f: ParsedField): string | undefined {
  const nativeEntry = [...f.attrs.entries()].find(([k]) => k.startsWith("db."));
  const native = nativeEntry?.[0].slice(3);
  const nativeArgs = nativeEntry?.[1];
  let base: string | undefined;
  switch (f.type) {
    case "String":
      base = native === "Uuid" ? "uuid" : native === "VarChar" ? `character varying${nativeArgs ? `(${nativeArgs})` : ""}` : native === "Char" ? `character(${nativeArgs ?? 1})` : "text";
      break;
    case "Int":
      base = native === "SmallInt" ? "smallint" : "integer";
      break;
    case "BigInt":
      base = "bigint";
      break;
    case "Float":
      base = native === "Real" ? "real" : "double precision";
      break;
    case "Decimal":
      base = `numeric(${nativeArgs ?? "65,30"})`;
      break;
    case "Boolean":
      base = "boolean";
      break;
    case "Json":
      base = native === "Json" ? "json" : "jsonb";
      break;
    case "Bytes":
      base = "bytea";
      break;
    case "DateTime":
      base =
        native === "Date"
          ? "date"
          : native === "Timestamptz"
            ? `timestamp(${nativeArgs || 6}) with time zone`
            : `timestamp(${native === "Timestamp" ? nativeArgs || 6 : 3}) without time zone`;
      break;
    default:
      return undefined; // an enum: compared by type name
  }
  return f.list ? `${base}[]` : base;
}

const CLIENT_SIDE_DEFAULTS = /^(uuid|cuid|nanoid|ulid)\(/;
const REFERENTIAL_ACTION: Record<string, string> = { Cascade: "c", Restrict: "r", NoAction: "a", SetNull: "n", SetDefault: "d" };

function compareSchema(schema: ParsedSchema, catalog: Catalog): string[] {
  const problems: string[] = [];
  const tables = new Map(catalog.tables.map((t) => [t.table, t]));
  const columnsOf = (table: string) => new Map(catalog.columns.filter((c) => c.table === table).map((c) => [c.column, c]));
  const indexesOf = (table: string) => catalog.indexes.filter((i) => i.table === table);
  const fksOf = (table: string) => catalog.foreignKeys.filter((f) => f.table === table);
  const modelTables = new Set([...schema.models.values()].map((m) => m.table));

  for (const [name, labels] of schema.enums) {
    const inDb = catalog.enums.get(name);
    if (!inDb) problems.push(`enum ${name}: no such type in the database`);
    else if (JSON.stringify(inDb) !== JSON.stringify(labels))
      problems.push(`enum ${name}: schema has [${labels}], database has [${inDb}]`);
  }
  for (const name of catalog.enums.keys()) {
    if (!schema.enums.has(name)) problems.push(`enum type ${name} exists in the database but not in the Prisma schema`);
  }

  for (const t of tables.keys()) {
    if (t !== "_prisma_migrations" && !modelTables.has(t)) problems.push(`table ${t} exists in the database but no Prisma model maps to it`);
  }

  for (const model of schema.models.values()) {
    const where = `${model.name} (${model.table})`;
    if (!tables.has(model.table)) {
      problems.push(`${where}: table missing`);
      continue;
    }
    const columns = columnsOf(model.table);
    const scalars = model.fields.filter((f) => !isRelationField(schema, f));
    const colOf = (field: string) => model.fields.find((f) => f.name === field)?.column ?? `<unknown field ${field}>`;

    for (const f of scalars) {
      const col = columns.get(f.column);
      const at = `${where}.${f.name} (column ${f.column})`;
      if (!col) {
        problems.push(`${at}: column missing`);
        continue;
      }
      // Prisma Migrate creates scalar lists as nullable columns.
      if (!f.list && col.notnull === f.optional)
        problems.push(`${at}: schema says ${f.optional ? "optional" : "required"}, column is ${col.notnull ? "NOT NULL" : "nullable"}`);
      const type = expectedType(f);
      if (type !== undefined) {
        if (col.type !== type) problems.push(`${at}: expected type ${type}, database has ${col.type}`);
      } else if (!schema.enums.has(f.type)) {
        problems.push(`${at}: unknown field type ${f.type}`);
      } else if (col.base_typtype !== "e" || col.base_typname !== f.type || col.is_array !== f.list) {
        problems.push(`${at}: expected enum ${f.type}${f.list ? "[]" : ""}, database has ${col.type}`);
      }
      const def = f.attrs.get("default");
      const wantsDbDefault = def !== undefined && !CLIENT_SIDE_DEFAULTS.test(def);
      if (wantsDbDefault !== col.hasdef)
        problems.push(`${at}: schema ${def === undefined ? "has no" : `has @default(${def}) (${wantsDbDefault ? "database" : "client"} side)`} default, column ${col.hasdef ? "has" : "has no"} default`);
    }
    const known = new Set(scalars.map((f) => f.column));
    for (const c of columns.keys()) {
      if (!known.has(c)) problems.push(`${where}: column ${c} exists in the database but not in the Prisma schema`);
    }

    // Primary key.
    const indexes = indexesOf(model.table);
    const pk = indexes.find((i) => i.primary);
    const wantPk = model.id.map(colOf);
    if (!pk) problems.push(`${where}: no primary key (schema: [${wantPk}])`);
    else if (JSON.stringify(pk.columns) !== JSON.stringify(wantPk))
      problems.push(`${where}: primary key is [${pk.columns}], schema says [${wantPk}]`);

    // Unique constraints and indexes (both directions).
    const plain = (i: IndexRow) => !i.partial && !i.expr;
    const uniques = indexes.filter((i) => i.unique && !i.primary);
    const wantUniques = model.uniques.map((u) => u.map(colOf));
    for (const u of wantUniques) {
      if (!uniques.some((i) => plain(i) && JSON.stringify(i.columns) === JSON.stringify(u)))
        problems.push(`${where}: no unique index on [${u}] (schema @unique/@@unique)`);
    }
    for (const i of uniques) {
      if (!plain(i) || !wantUniques.some((u) => JSON.stringify(i.columns) === JSON.stringify(u)))
        problems.push(`${where}: unique index ${i.index} on [${i.columns}] is not in the Prisma schema`);
    }
    const wantIndexes = model.indexes.map((ix) => ix.map((c) => `${colOf(c.field)}${c.desc ? " DESC" : ""}`));
    const plainIndexes = indexes.filter((i) => !i.unique && !i.primary);
    for (const want of wantIndexes) {
      if (!plainIndexes.some((i) => plain(i) && JSON.stringify(i.columns) === JSON.stringify(want)))
        problems.push(`${where}: no index on [${want}] (schema @@index)`);
    }
    for (const i of plainIndexes) {
      if (!plain(i) || !wantIndexes.some((w) => JSON.stringify(i.columns) === JSON.stringify(w)))
        problems.push(`${where}: index ${i.index} on [${i.columns}] is not in the Prisma schema`);
    }

    // Foreign keys (both directions).
    const fks = fksOf(model.table);
    const wantFks = model.fields
      .filter((f) => f.relation)
      .map((f) => {
        const target = schema.models.get(f.type)!;
        const targetCol = (field: string) => target.fields.find((x) => x.name === field)?.column ?? `<unknown field ${field}>`;
        const fromFields = f.relation!.fields;
        const optional = fromFields.some((ff) => model.fields.find((x) => x.name === ff)?.optional);
        return {
          field: f.name,
          table: target.table,
          columns: fromFields.map(colOf),
          refColumns: f.relation!.references.map(targetCol),
          onDelete: REFERENTIAL_ACTION[f.relation!.onDelete ?? (optional ? "SetNull" : "Restrict")],
          onUpdate: REFERENTIAL_ACTION[f.relation!.onUpdate ?? "Cascade"],
        };
      });
    for (const want of wantFks) {
      const at = `${where}.${want.field}: foreign key [${want.columns}] -> ${want.table}[${want.refColumns}]`;
      const fk = fks.find((k) => JSON.stringify(k.columns) === JSON.stringify(want.columns) && k.ref_table === want.table);
      if (!fk) problems.push(`${at} missing`);
      else {
        if (JSON.stringify(fk.ref_columns) !== JSON.stringify(want.refColumns))
          problems.push(`${at}: database references [${fk.ref_columns}]`);
        if (fk.on_delete !== want.onDelete) problems.push(`${at}: ON DELETE is '${fk.on_delete}', schema implies '${want.onDelete}'`);
        if (fk.on_update !== want.onUpdate) problems.push(`${at}: ON UPDATE is '${fk.on_update}', schema implies '${want.onUpdate}'`);
      }
    }
    for (const fk of fks) {
      if (!wantFks.some((w) => JSON.stringify(fk.columns) === JSON.stringify(w.columns) && fk.ref_table === w.table))
        problems.push(`${where}: foreign key ${fk.name} [${fk.columns}] -> ${fk.ref_table} is not in the Prisma schema`);
    }
  }
  return problems;
}

describe("the Prisma schema and the migrated database", () => {
  let db: TestDatabase;
  let catalog: Catalog;
  const schema = parsePrismaSchema();

  beforeAll(async () => {
    db = await createTestDatabase();
    dropLater.push(db);
    catalog = await readCatalog(db.url);
  });

  it("the schema reader agrees with the generated datamodel (guards the comparison below)", () => {
    const generated = getDatamodel().datamodel.models as unknown as Record<
      string,
      {
        fields: Array<{ name: string; kind: string; type: string; isRequired: boolean; isList: boolean; isId: boolean; isUnique: boolean; relationFromFields?: string[] }>;
        primaryKey: { fields: string[] } | null;
        uniqueIndexes: Array<{ fields: string[] }>;
      }
    >;
    expect([...schema.models.keys()].sort()).toEqual(Object.keys(generated).sort());
    for (const [name, g] of Object.entries(generated)) {
      const m = schema.models.get(name)!;
      const fromParser = m.fields.map((f) => ({
        name: f.name,
        type: f.type,
        isList: f.list,
        isRequired: f.list || !f.optional,
        relationFromFields: isRelationField(schema, f) ? (f.relation?.fields ?? []) : undefined,
      }));
      const fromGenerated = g.fields.map((f) => ({
        name: f.name,
        type: f.type,
        isList: f.isList,
        isRequired: f.isRequired,
        relationFromFields: f.kind === "object" ? f.relationFromFields : undefined,
      }));
      expect(fromParser, name).toEqual(fromGenerated);
      const pk = g.primaryKey?.fields ?? g.fields.filter((f) => f.isId).map((f) => f.name);
      expect(m.id, `${name} primary key`).toEqual(pk);
      const uniques = [...g.fields.filter((f) => f.isUnique).map((f) => [f.name]), ...g.uniqueIndexes.map((u) => u.fields)];
      expect(m.uniques.map((u) => u.join(",")).sort(), `${name} uniques`).toEqual(uniques.map((u) => u.join(",")).sort());
    }
  });

  it("has every model's table, column, key, index and foreign key, and nothing more", () => {
    expect(catalog.tables.length).toBeGreaterThan(0);
    expect(compareSchema(schema, catalog)).toEqual([]);
  });

  it("the comparison notices differences (it is not vacuous)", () => {
    const broken: Catalog = {
      ...catalog,
      tables: [...catalog.tables, { table: "stray_table", rls: false, force_rls: false, owner: "x" }],
      columns: catalog.columns
        .filter((c) => !(c.table === "projects" && c.column === "slug"))
        .map((c) => (c.table === "deployments" && c.column === "branch" ? { ...c, notnull: true } : c)),
      indexes: catalog.indexes.map((i) => (i.index === "memberships_pkey" ? { ...i, columns: ["id", "tenant_id"] } : i)),
      foreignKeys: catalog.foreignKeys.filter((f) => !(f.table === "workflows" && f.columns.includes("project_id"))),
    };
    const problems = compareSchema(schema, broken).join("\n");
    expect(problems).toMatch(/table stray_table exists in the database/);
    expect(problems).toMatch(/Project \(projects\)\.slug \(column slug\): column missing/);
    expect(problems).toMatch(/Deployment \(deployments\)\.branch .*optional, column is NOT NULL/);
    expect(problems).toMatch(/Membership \(memberships\): primary key is \[id,tenant_id\]/);
    expect(problems).toMatch(/Workflow \(workflows\)\.project: foreign key \[tenant_id,project_id\] -> projects\[tenant_id,id\] missing/);
  });
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
