import {
  getArgumentValues,
  getNamedType,
  getOperationAST,
  getVariableValues,
  isListType,
  isNonNullType,
  isObjectType,
  Kind,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLObjectType,
  type GraphQLSchema,
} from "graphql";
import { Prisma } from "../generated/prisma/client.ts";
import { checkAccess } from "../policy/enforcer.ts";
import { policyOf } from "../policy/field-policy.ts";
import { collect, collectSubfields, noDirectives } from "./sql-plan-fields.ts";
import { literal, scalarJson, type ConnectionSql, type PlanContext, type SqlField, type SqlPlans } from "./sql-plan.ts";

/**
 * Compiles a query operation whose every selected field is declared
 * (sql-plan.ts) into one statement returning the response's JSON text
 * (`{"data":...}`, the bytes `JSON.stringify` writes for the executed
 * result): each object a `'{' || '"key":' || value || ... || '}'`
 * concatenation in the selection's order, each connection one aggregate
 * over its page's rows. Fields are collected as execution collects them
 * (graphql-js' collectFields: fragments, type conditions, merging by
 * response key), arguments coerced as execution coerces them.
 *
 * Anything else answers null and the operation is executed as usual: a
 * field not declared (or introspection), any directive in the document, a
 * field whose policy is more than an @auth this caller passes (an
 * @auth it fails, @feature, @quota, @audit, @crossTenant), arguments a
 * declaration does not plan (cursors, a search) or that execution would
 * refuse (bad variables, a page size out of range): the caller gets the
 * usual answer and the usual errors.
 */

class Unplanned extends Error {}

const refuse = (why: string): never => {
  throw new Unplanned(why);
};

interface State {
  schema: GraphQLSchema;
  plans: SqlPlans;
  ctx: PlanContext;
  fragments: Record<string, FragmentDefinitionNode>;
  variables: Record<string, unknown>;
  aliases: number;
  /** The row sources from the root down to the current parent: what a lookup's keys are read from. */
  path: { alias: string; rows: Prisma.Sql }[];
  /** The lookups' common table expressions. */
  ctes: Prisma.Sql[];
  /** Subqueries planned so far (counts, objects, lookups, connections): bounded by MAX_SUBQUERIES. */
  subqueries: number;
}

/** More subqueries (one connection under thirty aliases: the loaders batch them) are executed as usual. */
export const MAX_SUBQUERIES = 12;

function subquery(s: State, what: string): void {
  if (++s.subqueries > MAX_SUBQUERIES) refuse(`${what}: more than ${MAX_SUBQUERIES} subqueries`);
}

export interface PlannedQuery {
  /** One row, one column `body`: the response's JSON text. */
  sql: Prisma.Sql;
  /** The root fields (response key and nodes), for an error located as execution would locate it. */
  roots: { key: string; nodes: readonly FieldNode[] }[];
}

/** The statement answering the operation, or null: execute it as usual. */
export function planQuery(
  schema: GraphQLSchema,
  plans: SqlPlans,
  ctx: PlanContext,
  document: DocumentNode,
  operationName: string | null | undefined,
  rawVariables: Record<string, unknown> | null | undefined,
): PlannedQuery | null {
  if (!noDirectives(document)) return null;
  const op = getOperationAST(document, operationName ?? undefined);
  const query = schema.getQueryType();
  if (!op || op.operation !== "query" || !query) return null;
  const coerced = getVariableValues(schema, op.variableDefinitions ?? [], rawVariables ?? {});
  if (coerced.errors) return null;
  const fragments: Record<string, FragmentDefinitionNode> = {};
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments[d.name.value] = d;
  const s: State = { schema, plans, ctx, fragments, variables: coerced.coerced, aliases: 0, path: [], ctes: [], subqueries: 0 };
  try {
    const fields = collect(s, query, [op.selectionSet]);
    const roots = [...fields].filter(([, nodes]) => nodes[0]!.name.value !== "__typename").map(([key, nodes]) => ({ key, nodes }));
    // Every root field non-null: a failed statement is then answered as execution answers it (no data).
    if (roots.length === 0 || !roots.every((r) => isNonNullType(query.getFields()[r.nodes[0]!.name.value]?.type))) return null;
    const json = objectJson(s, query, fields, null);
    const ctes = s.ctes.length ? Prisma.sql`WITH ${Prisma.join(s.ctes, ", ")} ` : Prisma.empty;
    return { sql: Prisma.sql`${ctes}SELECT '{"data":' || ${json} || '}' AS body`, roots };
  } catch (err) {
    // Not planned, or an argument execution would refuse (its error is execution's to give).
    void err;
    return null;
  }
}

/** The caller passes the field's policy for sure: no policy, or an @auth role this caller holds. */
function admit(ctx: PlanContext, type: GraphQLObjectType, def: GraphQLField<unknown, unknown>): void {
  const policy = policyOf(def.extensions?.directives, type.extensions?.directives);
  if (policy.crossTenant || policy.quota || policy.audit || policy.feature) refuse(`${type.name}.${def.name}: policy`);
  if (policy.auth) {
    try {
      checkAccess(ctx, policy);
    } catch {
      refuse(`${type.name}.${def.name}: denied`);
    }
  }
}

const nextAlias = (s: State) => `sp${++s.aliases}`;

/** An object's JSON text: its fields in the selection's order. `row` is the alias of its table row (null: the root). */
function objectJson(s: State, type: GraphQLObjectType, fields: Map<string, FieldNode[]>, row: string | null): Prisma.Sql {
  return members(fields, (nodes) => fieldJson(s, type, nodes, row));
}

/** `{"k1":v1,"k2":v2}` of the collected fields, as one concatenation. */
function members(fields: Map<string, FieldNode[]>, value: (nodes: readonly FieldNode[]) => Prisma.Sql): Prisma.Sql {
  const parts: Prisma.Sql[] = [];
  for (const [key, nodes] of fields) parts.push(literal(`${parts.length ? "," : "{"}"${key}":`), value(nodes));
  parts.push(literal(parts.length ? "}" : "{}"));
  return Prisma.sql`(${Prisma.join(parts, " || ")})`;
}

function fieldJson(s: State, type: GraphQLObjectType, nodes: readonly FieldNode[], row: string | null): Prisma.Sql {
  const name = nodes[0]!.name.value;
  if (name === "__typename") return literal(`"${type.name}"`);
  const def = type.getFields()[name] ?? refuse(`${type.name}.${name}: unknown`);
  const declared = s.plans[type.name]?.[name] ?? refuse(`${type.name}.${name}: not declared`);
  admit(s.ctx, type, def);
  const args = getArgumentValues(def, nodes[0]!, s.variables);
  const named = getNamedType(def.type);
  const rowSql = row === null ? null : Prisma.raw(row);
  const list = isListType(isNonNullType(def.type) ? def.type.ofType : def.type);
  if (declared.kind !== "column") subquery(s, `${type.name}.${name}`);
  let json: Prisma.Sql;
  if (declared.kind === "column" && rowSql && !list) {
    json = scalarJson(declared.format, Prisma.raw(`${row}.${declared.column}`), type.name);
  } else if (declared.kind === "int" && rowSql && !list) {
    json = Prisma.sql`(${declared.sql(rowSql, s.ctx)})::text`;
  } else if (declared.kind === "object" && rowSql && !list && isObjectType(named)) {
    const alias = nextAlias(s);
    const rows = declared.row(rowSql, s.ctx, args);
    const inner = below(s, alias, rows, () => objectJson(s, named, collectSubfields(s, named, nodes), alias));
    json = Prisma.sql`(SELECT ${inner} FROM (${rows}) ${Prisma.raw(alias)})`;
  } else if (declared.kind === "lookup" && row && !list && isObjectType(named) && Object.keys(args).length === 0) {
    json = lookupJson(s, named, nodes, row, declared);
  } else if (declared.kind === "connection" && !list && isObjectType(named)) {
    const page = declared.page(rowSql, s.ctx, args) ?? refuse(`${type.name}.${name}: arguments not planned`);
    json = connectionJson(s, named, nodes, page);
  } else {
    return refuse(`${type.name}.${name}: declaration does not fit`);
  }
  return isNonNullType(def.type) ? json : Prisma.sql`coalesce(${json}, 'null')`;
}

/** Compiles what lies below a row source (`alias` over `rows`) with that source on the path. */
function below<T>(s: State, alias: string, rows: Prisma.Sql, compile: () => T): T {
  s.path.push({ alias, rows });
  try {
    return compile();
  } finally {
    s.path.pop();
  }
}

/**
 * A lookup: its rows for every key of every parent row the statement reads
 * (the path's row sources joined again, LATERAL, in one MATERIALIZED common
 * table expression), then the parent's one by its key.
 */
function lookupJson(s: State, type: GraphQLObjectType, nodes: readonly FieldNode[], row: string, declared: Extract<SqlField, { kind: "lookup" }>): Prisma.Sql {
  const from = s.path.map((p, i) => Prisma.sql`${i ? Prisma.raw("CROSS JOIN LATERAL") : Prisma.empty} (${p.rows}) ${Prisma.raw(p.alias)}`);
  if (s.path.at(-1)?.alias !== row) refuse(`${type.name}: lookup outside its parent's rows`);
  const keys = Prisma.sql`SELECT ${Prisma.raw(`${row}.${declared.key}`)} FROM ${Prisma.join(from, " ")}`;
  const cte = nextAlias(s);
  s.ctes.push(Prisma.sql`${Prisma.raw(cte)} AS MATERIALIZED (${declared.rows(keys, s.ctx)})`);
  const alias = nextAlias(s);
  const match = Prisma.raw(`${alias}.${declared.column} = ${row}.${declared.key}`);
  return Prisma.sql`(SELECT ${objectJson(s, type, collectSubfields(s, type, nodes), alias)} FROM ${Prisma.raw(cte)} ${Prisma.raw(alias)} WHERE ${match})`;
}

/** The declared fields of a connection's own types (ProjectConnection, ProjectEdge, PageInfo), checked like any field. */
function connectionField(s: State, type: GraphQLObjectType, nodes: readonly FieldNode[]): GraphQLField<unknown, unknown> {
  const def = type.getFields()[nodes[0]!.name.value] ?? refuse(`${type.name}: unknown field`);
  if (nodes.some((n) => n.arguments?.length)) refuse(`${type.name}.${def.name}: arguments`);
  admit(s.ctx, type, def);
  return def;
}

/**
 * A connection as toConnection answers a forward page without cursors:
 * edges are the first `size` rows, hasNextPage whether there is one more,
 * hasPreviousPage false (no `after`), totalCount the declared count. One
 * aggregate over the page's rows, numbered in the page's order (`GROUP BY
 * ()`: one row even when nothing selected is an aggregate, or no row matched).
 */
function connectionJson(s: State, type: GraphQLObjectType, nodes: readonly FieldNode[], page: ConnectionSql): Prisma.Sql {
  const alias = nextAlias(s);
  const n = Prisma.raw(`${alias}.plan_n`);
  // A bound parameter: the statement's text does not depend on the page's size.
  const size = Prisma.sql`${page.size}::bigint`;
  const fields = collectSubfields(s, type, nodes);
  const json = members(fields, (sub) => {
    const name = sub[0]!.name.value;
    if (name === "__typename") return literal(`"${type.name}"`);
    const def = connectionField(s, type, sub);
    const named = getNamedType(def.type);
    if (name === "totalCount") return Prisma.sql`(${page.total})::text`;
    if (!isObjectType(named)) return refuse(`${type.name}.${name}`);
    const inner = collectSubfields(s, named, sub);
    if (name === "pageInfo") {
      return members(inner, (f) => {
        const field = f[0]!.name.value;
        if (field === "__typename") return literal(`"${named.name}"`);
        connectionField(s, named, f);
        if (field === "hasNextPage") return Prisma.sql`(CASE WHEN count(*) > ${size} THEN 'true' ELSE 'false' END)`;
        if (field === "hasPreviousPage") return literal("false");
        return refuse(`PageInfo.${field}: cursors are signed by the server`);
      });
    }
    if (name !== "edges") return refuse(`${type.name}.${name}`);
    const edge = members(inner, (f) => {
      const field = f[0]!.name.value;
      if (field === "__typename") return literal(`"${named.name}"`);
      const nodeDef = connectionField(s, named, f);
      const nodeType = getNamedType(nodeDef.type);
      if (field !== "node" || !isObjectType(nodeType)) return refuse(`${named.name}.${field}: cursors are signed by the server`);
      return below(s, alias, page.rows, () => objectJson(s, nodeType, collectSubfields(s, nodeType, f), alias));
    });
    return Prisma.sql`('[' || coalesce(string_agg(CASE WHEN ${n} <= ${size} THEN ${edge} END, ',' ORDER BY ${n}), '') || ']')`;
  });
  return Prisma.sql`(SELECT ${json} FROM (SELECT x.*, row_number() OVER (ORDER BY ${page.order("x")}) AS plan_n FROM (${page.rows}) x) ${Prisma.raw(alias)} GROUP BY ())`;
}
