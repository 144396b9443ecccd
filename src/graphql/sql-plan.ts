import { Prisma } from "../generated/prisma/client.ts";
import type { Context } from "../tenancy/context.ts";

/**
 * SQL-planned queries (docs/sql-plans.md): what a module declares so that a
 * query selecting only declared fields is answered by one statement whose
 * result is the response's JSON text, built by PostgreSQL
 * (`sql-plan-compile.ts` walks the selection, `src/http/use-sql-plans.ts`
 * runs it). A field that is not declared here is resolved as always.
 *
 * Every declaration reads the row of its parent through `row` (the alias of
 * the parent's table row, raw column names) and returns SQL that applies
 * the same tenant filter, visibility rule and arguments as the field's
 * resolver and loader; RLS applies as always (the request's transaction).
 */

/** A context whose tenant is known (the planner only runs for one). */
export type PlanContext = Context & { tenant: NonNullable<Context["tenant"]> };

/** How a column is written in the answer: as the field's resolver and scalar would serialize it. */
export type ScalarFormat = "string" | "int" | "boolean" | "enum" | "dateTime" | "globalId";

/** One page of a connection, in SQL. */
export interface ConnectionSql {
  /** The page's rows (raw columns), in fetch order, at most `size + 1` of them (the extra one says there is more). */
  rows: Prisma.Sql;
  /** That order over the alias given (numbers the rows). */
  order: (alias: string) => Prisma.Sql;
  size: number;
  /** A scalar subquery: the connection's totalCount. */
  total: Prisma.Sql;
}

export type SqlField =
  /** A column of the parent's row. */
  | { kind: "column"; column: string; format: ScalarFormat }
  /** A non-null integer computed by a scalar subquery. */
  | { kind: "int"; sql: (row: Prisma.Sql, ctx: PlanContext) => Prisma.Sql }
  /**
   * An object found by a key column of the parent's row (`key`) among the
   * rows `rows` selects for a set of keys (a SELECT of key values), matched
   * on their column `column`; null when none. The statement reads them once
   * for every parent row of the operation (a MATERIALIZED common table
   * expression): a creator's visibility is checked once per creator, not
   * once per deployment.
   */
  | { kind: "lookup"; key: string; column: string; rows: (keys: Prisma.Sql, ctx: PlanContext) => Prisma.Sql }
  /** An object read by a SELECT of at most one row (raw columns); null when there is none. */
  | { kind: "object"; row: (parent: Prisma.Sql, ctx: PlanContext, args: Record<string, unknown>) => Prisma.Sql }
  /**
   * A connection (edges { node }, pageInfo { hasNextPage hasPreviousPage }, totalCount) over a page;
   * null when these arguments are not planned (after/before cursors, a search): the query is then
   * executed as usual. `parent` is null for a root field.
   */
  | { kind: "connection"; page: (parent: Prisma.Sql | null, ctx: PlanContext, args: Record<string, unknown>) => ConnectionSql | null };

/** The declared fields, by type and field name. */
export type SqlPlans = Record<string, Record<string, SqlField>>;

/** Merges the modules' declarations (a field declared twice is a mistake). */
export function sqlPlans(...parts: SqlPlans[]): SqlPlans {
  const out: SqlPlans = {};
  for (const part of parts) {
    for (const [type, fields] of Object.entries(part)) {
      for (const name of Object.keys(fields)) if (out[type]?.[name]) throw new Error(`sql plan: ${type}.${name} declared twice`);
      out[type] = { ...out[type], ...fields };
    }
  }
  return out;
}

/** Text as a SQL string literal (names and punctuation of the answer; quotes doubled, standard_conforming_strings). */
export const literal = (text: string) => Prisma.raw(`'${text.replace(/'/g, "''")}'`);

/**
 * The JSON text of a column as the answer carries it (`JSON.stringify` of
 * what the resolver and scalar return): strings through `to_json` (the
 * same escapes as JSON.stringify: \" \\ \b \f \n \r \t, \u00xx below 0x20),
 * DateTime as `Date.toISOString` writes it (timestamptz(3), UTC, always 3
 * fraction digits), global ids as Pothos encodes them (base64 of
 * "<Type>:<uuid>"), enums by their label. NULL stays NULL here.
 */
export function scalarJson(format: ScalarFormat, column: Prisma.Sql, typeName: string): Prisma.Sql {
  switch (format) {
    case "string":
      return Prisma.sql`to_json(${column})::text`;
    case "enum":
      return Prisma.sql`to_json(${column}::text)::text`;
    case "int":
      return Prisma.sql`(${column})::text`;
    case "boolean":
      return Prisma.sql`(CASE WHEN ${column} THEN 'true' WHEN NOT ${column} THEN 'false' END)`;
    case "dateTime":
      return Prisma.sql`('"' || to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"')`;
    case "globalId":
      return Prisma.sql`('"' || translate(encode(convert_to(${literal(`${typeName}:`)} || ${column}::text, 'UTF8'), 'base64'), E'\\n', '') || '"')`;
  }
}
