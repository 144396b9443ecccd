import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { query, readCatalog, type Catalog } from "../helpers/catalog.ts";

/**
 * docs/scale-out.md's Citus distribution plan, checked against the migrated
 * database's catalog (never a hard-coded list of tables): a table with a
 * `tenant_id` column is a tenant table, distributed by `tenant_id`; every
 * other one is a reference or local table.
 */

/** What Citus needs of the schema to distribute every tenant table by tenant_id, co-located. */
function distributionProblems(catalog: Catalog, allowedGlobalUniques: ReadonlySet<string>): string[] {
  const tenant = new Set(catalog.columns.filter((c) => c.column === "tenant_id").map((c) => c.table));
  const problems: string[] = [];
  for (const table of [...tenant].sort()) {
    const pk = catalog.indexes.find((i) => i.table === table && i.primary);
    if (!pk) problems.push(`${table}: no primary key`);
    else if (pk.columns[0] !== "tenant_id") problems.push(`${table}: primary key (${pk.columns}) does not lead with tenant_id`);
  }
  for (const fk of catalog.foreignKeys) {
    const from = tenant.has(fk.table);
    const to = tenant.has(fk.ref_table);
    if (from && to && (fk.columns[0] !== "tenant_id" || fk.ref_columns[0] !== "tenant_id"))
      problems.push(`${fk.table}: foreign key ${fk.name} (${fk.columns}) -> ${fk.ref_table} (${fk.ref_columns}) does not lead with tenant_id on both sides`);
    if (!from && to) problems.push(`${fk.table}: a global table references the tenant table ${fk.ref_table} (${fk.name}): Citus refuses a key from a reference table to a distributed one`);
  }
  for (const i of catalog.indexes) {
    if (!tenant.has(i.table) || !i.unique || i.primary) continue;
    if (!i.columns.includes("tenant_id") && !allowedGlobalUniques.has(`${i.table}(${i.columns})`))
      problems.push(`${i.table}: unique index ${i.index} (${i.columns}) without tenant_id (Citus cannot enforce it on a distributed table)`);
  }
  return problems;
}

/** The table of docs/scale-out.md between the distribution markers: table -> distributed | reference | local. */
function documentedPlan(): Map<string, string> {
  const doc = readFileSync("docs/scale-out.md", "utf8");
  const start = doc.indexOf("<!-- distribution:");
  const end = doc.indexOf("<!-- /distribution -->");
  expect(start).toBeGreaterThan(0);
  const plan = new Map<string, string>();
  for (const m of doc.slice(start, end).matchAll(/^\| `([a-z_]+)` \| (distributed|reference|local) \|/gm)) plan.set(m[1]!, m[2]!);
  return plan;
}

/** The unique keys without tenant_id that docs/scale-out.md says how to handle (the api_key_hashes lookup). */
const HANDLED_GLOBAL_UNIQUES = new Set(["api_keys(secret_hash)", "api_keys(previous_secret_hash)"]);

describe("Citus distribution plan (docs/scale-out.md) against the migrated schema", () => {
  let db: TestDatabase;
  let catalog: Catalog;

  beforeAll(async () => {
    db = await createTestDatabase();
    catalog = await readCatalog(db.url);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("every tenant table's primary key and foreign keys lead with tenant_id; no global table references a tenant table", () => {
    const tenantTables = new Set(catalog.columns.filter((c) => c.column === "tenant_id").map((c) => c.table));
    expect(tenantTables.size).toBeGreaterThan(5);
    expect(distributionProblems(catalog, HANDLED_GLOBAL_UNIQUES)).toEqual([]);
  });

  it("the plan lists every table of the catalog: the tenant tables as distributed, the others as reference or local", () => {
    const plan = documentedPlan();
    const actual = new Map(
      catalog.tables.map((t) => [t.table, catalog.columns.some((c) => c.table === t.table && c.column === "tenant_id") ? "distributed" : "global"]),
    );
    const problems: string[] = [];
    for (const [table, kind] of actual) {
      const documented = plan.get(table);
      if (!documented) problems.push(`${table}: not in docs/scale-out.md's plan`);
      else if ((kind === "distributed") !== (documented === "distributed")) problems.push(`${table}: ${kind} in the schema, ${documented} in the plan`);
    }
    for (const table of plan.keys()) if (!actual.has(table)) problems.push(`${table}: in the plan, not in the schema`);
    expect(problems).toEqual([]);
  });

  it("fails on a tenant table whose key does not lead with tenant_id, or a foreign key that does not (the check can fail)", async () => {
    // A key that leads with id, a foreign key to projects in (id, tenant_id) order, a unique slug without tenant_id.
    await query(
      db.url,
      `CREATE TABLE scale_out_bad (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, project_id uuid, project_tenant uuid, slug text UNIQUE,
         FOREIGN KEY (project_id, project_tenant) REFERENCES projects (id, tenant_id))`,
    );
    await query(db.url, `CREATE TABLE scale_out_global (id uuid PRIMARY KEY, tenant_id_ref uuid)`);
    await query(db.url, `ALTER TABLE scale_out_global ADD COLUMN p_tenant uuid, ADD COLUMN p_id uuid, ADD FOREIGN KEY (p_tenant, p_id) REFERENCES projects (tenant_id, id)`);
    const bad = await readCatalog(db.url);
    const problems = distributionProblems(bad, HANDLED_GLOBAL_UNIQUES);
    expect(problems).toContain("scale_out_bad: primary key (id) does not lead with tenant_id");
    expect(problems.some((p) => p.startsWith("scale_out_global: a global table references the tenant table projects"))).toBe(true);
    expect(problems.some((p) => p.startsWith("scale_out_bad: foreign key") && p.includes("does not lead with tenant_id"))).toBe(true);
    expect(problems.some((p) => p.startsWith("scale_out_bad: unique index") && p.includes("(slug)"))).toBe(true);
  });
});
