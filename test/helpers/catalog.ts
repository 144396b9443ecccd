import pg from "pg";

/** The migrated database as PostgreSQL's catalog describes it (shared by the schema and RLS tests). */

export interface ColumnRow {
  table: string;
  column: string;
  notnull: boolean;
  type: string;
  hasdef: boolean;
  base_typname: string;
  base_typtype: string;
  is_array: boolean;
}
export interface IndexRow {
  table: string;
  index: string;
  primary: boolean;
  unique: boolean;
  partial: boolean;
  expr: boolean;
  columns: string[];
}
export interface ForeignKeyRow {
  name: string;
  table: string;
  ref_table: string;
  on_delete: string;
  on_update: string;
  columns: string[];
  ref_columns: string[];
}
export interface TableRow {
  table: string;
  rls: boolean;
  force_rls: boolean;
  owner: string;
}

export interface Catalog {
  tables: TableRow[];
  columns: ColumnRow[];
  indexes: IndexRow[];
  foreignKeys: ForeignKeyRow[];
  enums: Map<string, string[]>;
}

export async function readCatalog(url: string): Promise<Catalog> {
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

/** Runs one statement on its own connection to `url`. */
export async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}
