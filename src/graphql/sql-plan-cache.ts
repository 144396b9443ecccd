import type { DocumentNode, FieldNode, GraphQLSchema } from "graphql";
import { Prisma } from "../generated/prisma/client.ts";
import type { SqlPlanFallback } from "../infra/metrics.ts";
import { checkAccess } from "../policy/enforcer.ts";
import type { FieldPolicy } from "../policy/field-policy.ts";
import type { PlanContext, SqlPlans } from "./sql-plan.ts";

/**
 * The SQL planner's compile cache (docs/sql-plans.md, "The compile cache").
 * A compiled plan is a *template*: the statement's text, and in place of
 * every value it binds a Slot naming where the value comes from, the
 * declaration call ("site") that produced it. Binding calls each site again
 * for this request (its tenant, caller, coerced arguments), checks that the
 * site wrote the same text, and takes its values: the tenant id and the
 * variables are always parameters bound per request, never part of the
 * cached text, and a site whose text depends on a value (a search, an empty
 * status filter) refuses the template instead of binding it.
 */

/** A bound value of a template: the `index`th value of part `part` of site `site`'s SQL. */
export class Slot {
  constructor(
    readonly site: number,
    readonly part: number,
    readonly index: number,
  ) {}
}

/** A declaration call of the plan, made again for every request the template binds. */
export interface Site {
  /** The call's SQL parts for this request (null: these arguments are not planned). */
  make: (ctx: PlanContext, variables: Record<string, unknown>) => readonly Prisma.Sql[] | null;
  /** The text of each part when the template was compiled. */
  strings: readonly (readonly string[])[];
}

export interface Template {
  /** The statement, its values Slots. */
  sql: Prisma.Sql;
  sites: readonly Site[];
  /** The @auth policies admitted at compile time: checked again for every caller bound. */
  policies: readonly FieldPolicy[];
  roots: { key: string; nodes: readonly FieldNode[] }[];
}

/** An entry: a template, or why the document is never planned for such a caller. */
export type Compiled = { template: Template } | { fallback: SqlPlanFallback };

/** The template does not fit this request (text or admission differs): compile for it instead. */
export class Misfit extends Error {}

/** The statement for this request: every Slot bound, or Misfit. */
export function bind(t: Template, ctx: PlanContext, variables: Record<string, unknown>): Prisma.Sql {
  for (const policy of t.policies) {
    try {
      checkAccess(ctx, policy);
    } catch {
      throw new Misfit("denied");
    }
  }
  const made = t.sites.map((site) => {
    let parts: readonly Prisma.Sql[] | null;
    try {
      parts = site.make(ctx, variables);
    } catch {
      // An argument these values make invalid: compiled again, it falls back ("invalid") and execution answers.
      throw new Misfit("values");
    }
    if (!parts || parts.length !== site.strings.length || !parts.every((p, i) => sameText(p.strings, site.strings[i]!))) throw new Misfit("text");
    return parts;
  });
  const value = (v: unknown): unknown => (v instanceof Slot ? value(made[v.site]![v.part]!.values[v.index]) : v);
  return new Prisma.Sql(t.sql.strings, t.sql.values.map(value));
}

function sameText(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Entries kept (least recently used dropped first): a template of the dashboard is ~6 KB of text and its closures. */
export const PLAN_CACHE_MAX = 256;

const entries = new Map<string, Compiled>();

/** Number of entries held (tests: the bound). */
export const planCacheSize = () => entries.size;

export function cached(key: string): Compiled | undefined {
  const hit = entries.get(key);
  if (hit) {
    // Most recently used last: a Map iterates in insertion order.
    entries.delete(key);
    entries.set(key, hit);
  }
  return hit;
}

export function remember(key: string, entry: Compiled): void {
  entries.delete(key);
  entries.set(key, entry);
  if (entries.size > PLAN_CACHE_MAX) entries.delete(entries.keys().next().value!);
}

const ids = new WeakMap<object, number>();
let lastId = 0;
/** A number per object (schema, declarations, document): held weakly, so a document dropped by Yoga's parser cache is not kept by its key. */
const idOf = (o: object) => {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = ++lastId));
  return id;
};

/**
 * The cache key: everything a compiled template depends on but its bound
 * values (docs/sql-plans.md lists why each is there). The tenant is not in
 * it: its id is a bound value, and its admission facts that the planner
 * reads are (the role, the features).
 */
export function planKey(
  schema: GraphQLSchema,
  plans: SqlPlans,
  ctx: PlanContext,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown>,
): string {
  return `${idOf(schema)}.${idOf(plans)}.${idOf(document)}\0${operationName ?? ""}\0${ctx.actor ? ctx.actor.type : "-"}\0${ctx.role ?? "-"}\0${ctx.tenant.features.join(",")}\0${shapeOf(variables)}`;
}

/**
 * What of the coerced variables can change the statement's text: which are
 * null or absent, of what type, and which fields of an input object are set
 * (a filter's `createdAfter` adds a condition); lists by whether they are
 * empty. Values themselves are bound (a text that depends on one, such as
 * a search or a status list, is caught by `bind`).
 */
function shapeOf(v: unknown): string {
  if (v === undefined) return "u";
  if (v === null) return "n";
  if (Array.isArray(v)) return v.length ? `[${shapeOf(v[0])}]` : "[]";
  if (typeof v === "object") {
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto !== null && proto !== Object.prototype) return "o";
    let out = "{";
    for (const k in v) out += `${k}:${shapeOf((v as Record<string, unknown>)[k])},`;
    return `${out}}`;
  }
  return (typeof v)[0]!;
}
