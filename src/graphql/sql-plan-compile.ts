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
  type OperationDefinitionNode,
} from "graphql";
import { Prisma } from "../generated/prisma/client.ts";
import { countSqlPlan, type SqlPlanFallback } from "../infra/metrics.ts";
import { checkAccess } from "../policy/enforcer.ts";
import { PLAN_GATE } from "../tenancy/request-facts.ts";
import { policyOf, type FieldPolicy } from "../policy/field-policy.ts";
import { bind, cached, Misfit, planKey, remember, Slot, type Compiled, type Site, type Template } from "./sql-plan-cache.ts";
import { collect, collectSubfields, noDirectives } from "./sql-plan-fields.ts";
import { literal, scalarJson, type PlanContext, type SqlField, type SqlPlans } from "./sql-plan.ts";

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
 * usual answer and the usual errors. Each fallback is counted by its
 * reason (tenantgraph_sql_plan_total, src/infra/metrics.ts).
 *
 * A compiled plan is kept (sql-plan-cache.ts) and bound again for the next
 * request of the same document, operation, caller's role and features and
 * variables' shape: only the declarations' values are made again.
 */

class Unplanned extends Error {
  constructor(
    readonly reason: SqlPlanFallback,
    why: string,
  ) {
    super(why);
  }
}

const refuse = (reason: SqlPlanFallback, why: string): never => {
  throw new Unplanned(reason, why);
};

/** Fallbacks that depend on a variable's value, not only on the key's inputs: never remembered. */
const VALUE_DEPENDENT = new Set<SqlPlanFallback>(["variables", "arguments", "invalid"]);

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
  /** The declaration calls whose values the template binds. */
  sites: Site[];
  /** The @auth policies this caller was admitted by. */
  policies: Set<FieldPolicy>;
}

/** More subqueries (one connection under thirty aliases: the loaders batch them) are executed as usual. */
export const MAX_SUBQUERIES = 12;

function subquery(s: State, what: string): void {
  if (++s.subqueries > MAX_SUBQUERIES) refuse("bound", `${what}: more than ${MAX_SUBQUERIES} subqueries`);
}

export interface PlannedQuery {
  /** One row, one column `body`: the response's JSON text. */
  sql: Prisma.Sql;
  /** The root fields (response key and nodes), for an error located as execution would locate it. */
  roots: { key: string; nodes: readonly FieldNode[] }[];
}

/**
 * The planned statement as a planned read's one message sends it, before
 * its caller is confirmed (docs/request-path.md, "One message for a planned
 * read"): it does nothing unless the facts statement before it set the gate
 * (src/tenancy/request-facts.ts `gatedFacts`). The top SELECT has no
 * FROM, so its WHERE is a one-time filter (a gating Result node): off, the
 * lookups' MATERIALIZED CTEs and the InitPlans under it are never executed
 * (EXPLAIN ANALYZE: "never executed") and it answers no row.
 */
export function gated(planned: PlannedQuery): Prisma.Sql {
  return Prisma.sql`${planned.sql} WHERE current_setting(${Prisma.raw(`'${PLAN_GATE}'`)}, true) = 'on'`;
}

/** The statement answering the operation, or null: execute it as usual (the reason counted). */
export function planQuery(
  schema: GraphQLSchema,
  plans: SqlPlans,
  ctx: PlanContext,
  document: DocumentNode,
  operationName: string | null | undefined,
  rawVariables: Record<string, unknown> | null | undefined,
): PlannedQuery | null {
  if (!noDirectives(document)) return fallback("directive");
  const op = getOperationAST(document, operationName ?? undefined);
  if (!op || op.operation !== "query") return fallback("operation");
  const coerced = getVariableValues(schema, op.variableDefinitions ?? [], rawVariables ?? {});
  if (coerced.errors) return fallback("variables");
  const variables = coerced.coerced;
  const key = planKey(schema, plans, ctx, document, operationName, variables);
  let entry = cached(key);
  const hit = !!entry;
  if (!entry) {
    entry = compile(schema, plans, ctx, document, op, variables);
    if ("template" in entry || !VALUE_DEPENDENT.has(entry.fallback)) remember(key, entry);
  }
  if ("fallback" in entry) return fallback(entry.fallback);
  try {
    const sql = bind(entry.template, ctx, variables);
    countSqlPlan("planned", hit ? "cached" : "compiled");
    return { sql, roots: entry.template.roots };
  } catch (err) {
    if (!(err instanceof Misfit)) throw err;
  }
  // Not this request's template (a value changed a site's text, or a site refused these values): compiled for it alone.
  const own = compile(schema, plans, ctx, document, op, variables);
  if ("fallback" in own) return fallback(own.fallback);
  let sql: Prisma.Sql;
  try {
    sql = bind(own.template, ctx, variables);
  } catch (err) {
    // A declaration whose text differs between two calls with the same request: executed as usual.
    if (err instanceof Misfit) return fallback("invalid");
    throw err;
  }
  countSqlPlan("planned", "compiled");
  return { sql, roots: own.template.roots };
}

function fallback(reason: SqlPlanFallback): null {
  countSqlPlan("fallback", reason);
  return null;
}

/** The operation's template, or why it is executed as usual. */
function compile(
  schema: GraphQLSchema,
  plans: SqlPlans,
  ctx: PlanContext,
  document: DocumentNode,
  op: OperationDefinitionNode,
  variables: Record<string, unknown>,
): Compiled {
  const query = schema.getQueryType();
  if (!query) return { fallback: "operation" };
  const fragments: Record<string, FragmentDefinitionNode> = {};
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments[d.name.value] = d;
  const s: State = { schema, plans, ctx, fragments, variables, aliases: 0, path: [], ctes: [], subqueries: 0, sites: [], policies: new Set() };
  let template: Template;
  try {
    const fields = collect(s, query, [op.selectionSet]);
    const roots = [...fields].filter(([, nodes]) => nodes[0]!.name.value !== "__typename").map(([key, nodes]) => ({ key, nodes }));
    // Every root field non-null: a failed statement is then answered as execution answers it (no data).
    if (roots.length === 0 || !roots.every((r) => isNonNullType(query.getFields()[r.nodes[0]!.name.value]?.type))) return { fallback: "root" };
    const json = objectJson(s, query, fields, null);
    const ctes = s.ctes.length ? Prisma.sql`WITH ${Prisma.join(s.ctes, ", ")} ` : Prisma.empty;
    template = { sql: Prisma.sql`${ctes}SELECT '{"data":' || ${json} || '}' AS body`, sites: s.sites, policies: [...s.policies], roots };
  } catch (err) {
    // Not planned, or an argument execution would refuse (its error is execution's to give).
    return { fallback: err instanceof Unplanned ? err.reason : "invalid" };
  }
  // Every value comes from a declaration call, made again per request: a value
  // the compiler wrote itself would be cached with the template (another
  // request's tenant or variable), so it is a bug, not a fallback.
  if (!template.sql.values.every((v) => v instanceof Slot)) throw new Error("sql plan: a value outside a declaration call");
  return { template };
}

/**
 * A declaration call: made now for this request, and again by every request
 * its template is bound for. Its parts come back with Slots for values (a
 * Slot already in them, from a part passed in, stays as it is).
 */
function site(s: State, why: string, make: Site["make"]): Prisma.Sql[] {
  const parts = make(s.ctx, s.variables) ?? refuse("arguments", `${why}: arguments not planned`);
  const at = s.sites.length;
  s.sites.push({ make, strings: parts.map((p) => p.strings) });
  return parts.map((p, part) => new Prisma.Sql(p.strings, p.values.map((v, i) => (v instanceof Slot ? v : new Slot(at, part, i)))));
}

/** The caller passes the field's policy for sure: no policy, or an @auth role this caller holds. */
function admit(s: State, type: GraphQLObjectType, def: GraphQLField<unknown, unknown>): void {
  const policy = policyOf(def.extensions?.directives, type.extensions?.directives);
  if (policy.crossTenant || policy.quota || policy.audit || policy.feature) refuse("policy", `${type.name}.${def.name}: policy`);
  if (policy.auth) {
    try {
      checkAccess(s.ctx, policy);
    } catch {
      refuse("denied", `${type.name}.${def.name}: denied`);
    }
    s.policies.add(policy);
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
  const def = type.getFields()[name] ?? refuse("undeclared", `${type.name}.${name}: unknown`);
  const declared = s.plans[type.name]?.[name] ?? refuse("undeclared", `${type.name}.${name}: not declared`);
  admit(s, type, def);
  // Arguments execution would refuse are its to answer (a throw here: "invalid"); made again when bound.
  const argsOf = (variables: Record<string, unknown>) => getArgumentValues(def, nodes[0]!, variables);
  argsOf(s.variables);
  // Only objects and connections read arguments: elsewhere they would be left unchecked by a bound template.
  if (def.args.length && declared.kind !== "object" && declared.kind !== "connection") refuse("arguments", `${type.name}.${name}: arguments`);
  const why = `${type.name}.${name}`;
  const named = getNamedType(def.type);
  const rowSql = row === null ? null : Prisma.raw(row);
  const list = isListType(isNonNullType(def.type) ? def.type.ofType : def.type);
  if (declared.kind !== "column") subquery(s, `${type.name}.${name}`);
  let json: Prisma.Sql;
  if (declared.kind === "column" && rowSql && !list) {
    json = scalarJson(declared.format, Prisma.raw(`${row}.${declared.column}`), type.name);
  } else if (declared.kind === "int" && rowSql && !list) {
    const [count] = site(s, why, (ctx) => [declared.sql(rowSql, ctx)]);
    json = Prisma.sql`(${count})::text`;
  } else if (declared.kind === "object" && rowSql && !list && isObjectType(named)) {
    const alias = nextAlias(s);
    const [rows] = site(s, why, (ctx, variables) => [declared.row(rowSql, ctx, argsOf(variables))]) as [Prisma.Sql];
    const inner = below(s, alias, rows, () => objectJson(s, named, collectSubfields(s, named, nodes), alias));
    json = Prisma.sql`(SELECT ${inner} FROM (${rows}) ${Prisma.raw(alias)})`;
  } else if (declared.kind === "lookup" && row && !list && isObjectType(named)) {
    json = lookupJson(s, named, nodes, row, declared);
  } else if (declared.kind === "connection" && !list && isObjectType(named)) {
    const [rows, order, total, size] = site(s, why, (ctx, variables) => {
      const page = declared.page(rowSql, ctx, argsOf(variables));
      return page && [page.rows, page.order("x"), page.total, Prisma.sql`${page.size}`];
    }) as [Prisma.Sql, Prisma.Sql, Prisma.Sql, Prisma.Sql];
    json = connectionJson(s, named, nodes, { rows, order, total, size });
  } else {
    return refuse("undeclared", `${why}: declaration does not fit`);
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
  if (s.path.at(-1)?.alias !== row) refuse("undeclared", `${type.name}: lookup outside its parent's rows`);
  const keys = Prisma.sql`SELECT ${Prisma.raw(`${row}.${declared.key}`)} FROM ${Prisma.join(from, " ")}`;
  const cte = nextAlias(s);
  // `keys` holds the path's Slots: the call made again binds them through.
  const [rows] = site(s, `${type.name} lookup`, (ctx) => [declared.rows(keys, ctx)]);
  s.ctes.push(Prisma.sql`${Prisma.raw(cte)} AS MATERIALIZED (${rows})`);
  const alias = nextAlias(s);
  const match = Prisma.raw(`${alias}.${declared.column} = ${row}.${declared.key}`);
  return Prisma.sql`(SELECT ${objectJson(s, type, collectSubfields(s, type, nodes), alias)} FROM ${Prisma.raw(cte)} ${Prisma.raw(alias)} WHERE ${match})`;
}

/** The declared fields of a connection's own types (ProjectConnection, ProjectEdge, PageInfo), checked like any field. */
function connectionField(s: State, type: GraphQLObjectType, nodes: readonly FieldNode[]): GraphQLField<unknown, unknown> {
  const def = type.getFields()[nodes[0]!.name.value] ?? refuse("undeclared", `${type.name}: unknown field`);
  if (nodes.some((n) => n.arguments?.length)) refuse("arguments", `${type.name}.${def.name}: arguments`);
  admit(s, type, def);
  return def;
}

/** A connection's page as the template holds it (ConnectionSql's parts; `order` over `x`, `size` a bound value). */
interface PageParts {
  rows: Prisma.Sql;
  order: Prisma.Sql;
  total: Prisma.Sql;
  size: Prisma.Sql;
}

/**
 * A connection as toConnection answers a forward page without cursors:
 * edges are the first `size` rows, hasNextPage whether there is one more,
 * hasPreviousPage false (no `after`), totalCount the declared count. One
 * aggregate over the page's rows, numbered in the page's order (`GROUP BY
 * ()`: one row even when nothing selected is an aggregate, or no row matched).
 */
function connectionJson(s: State, type: GraphQLObjectType, nodes: readonly FieldNode[], page: PageParts): Prisma.Sql {
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
    if (!isObjectType(named)) return refuse("undeclared", `${type.name}.${name}`);
    const inner = collectSubfields(s, named, sub);
    if (name === "pageInfo") {
      return members(inner, (f) => {
        const field = f[0]!.name.value;
        if (field === "__typename") return literal(`"${named.name}"`);
        connectionField(s, named, f);
        if (field === "hasNextPage") return Prisma.sql`(CASE WHEN count(*) > ${size} THEN 'true' ELSE 'false' END)`;
        if (field === "hasPreviousPage") return literal("false");
        return refuse("cursor", `PageInfo.${field}: cursors are signed by the server`);
      });
    }
    if (name !== "edges") return refuse("undeclared", `${type.name}.${name}`);
    const edge = members(inner, (f) => {
      const field = f[0]!.name.value;
      if (field === "__typename") return literal(`"${named.name}"`);
      const nodeDef = connectionField(s, named, f);
      const nodeType = getNamedType(nodeDef.type);
      if (field !== "node" || !isObjectType(nodeType)) return refuse("cursor", `${named.name}.${field}: cursors are signed by the server`);
      return below(s, alias, page.rows, () => objectJson(s, nodeType, collectSubfields(s, nodeType, f), alias));
    });
    return Prisma.sql`('[' || coalesce(string_agg(CASE WHEN ${n} <= ${size} THEN ${edge} END, ',' ORDER BY ${n}), '') || ']')`;
  });
  return Prisma.sql`(SELECT ${json} FROM (SELECT x.*, row_number() OVER (ORDER BY ${page.order}) AS plan_n FROM (${page.rows}) x) ${Prisma.raw(alias)} GROUP BY ())`;
}
