import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getDatamodel } from "../../src/generated/pothos-types.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { readCatalog, type Catalog, type IndexRow } from "../helpers/catalog.ts";
import { isRelationField, parsePrismaSchema, type ParsedField, type ParsedSchema } from "../helpers/prisma-schema.ts";

/** The Prisma schema and the migrated database agree: every table, column, key, index and foreign key. */

const dropLater: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dropLater.map((d) => d.drop()));
});

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
