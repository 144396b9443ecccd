import { Prisma } from "../generated/prisma/client.ts";
import { getDatamodel } from "../generated/pothos-types.ts";

/**
 * Wall 1: a Prisma client extension that confines every operation to one
 * tenant. It injects the tenant into the `where` of every read, update and
 * delete, into the `data` of every create, into relation filters, and into
 * every `include`/`select` of a relation that leads to tenant-owned rows.
 * Wall 2 (row-level security) holds on its own; this one holds when RLS is
 * off, and gives clean NOT_FOUNDs instead of policy violations.
 */

interface FieldInfo {
  kind: string;
  name: string;
  type: string;
  isList: boolean;
}

const models = getDatamodel().datamodel.models as unknown as Record<string, { fields: FieldInfo[] }>;

/** Models whose rows belong to a tenant: those with a tenantId column. */
export const TENANT_MODELS: ReadonlySet<string> = new Set(
  Object.entries(models)
    .filter(([, m]) => m.fields.some((f) => f.name === "tenantId" && f.kind === "scalar"))
    .map(([name]) => name),
);

const relationsOf = new Map<string, Map<string, FieldInfo>>(
  Object.entries(models).map(([name, m]) => [
    name,
    new Map(m.fields.filter((f) => f.kind === "object").map((f) => [f.name, f])),
  ]),
);

export class TenantScopeViolation extends Error {
  constructor(message: string) {
    super(`tenant scope: ${message}`);
    this.name = "TenantScopeViolation";
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export interface TenantScope {
  tenantId: string;
  /** The calling user, who may see their own user row. */
  userId?: string | null;
}

/** Where-condition that confines `model` to the scope, or undefined for models that need none. */
function modelCondition(model: string, scope: TenantScope): Obj | undefined {
  if (TENANT_MODELS.has(model)) return { tenantId: scope.tenantId };
  if (model === "Tenant") return { id: scope.tenantId };
  if (model === "User") {
    // The mirror of app_visible_user (prisma/migrations/20261202002000_visible_user):
    // a member of the tenant, or the caller.
    const member = { memberships: { some: { tenantId: scope.tenantId } } };
    return scope.userId ? { OR: [{ id: scope.userId }, member] } : member;
  }
  throw new TenantScopeViolation(`${model} is not reachable from a tenant-scoped client`);
}

/** Adds the scope to a `where`, rewriting nested relation filters too. */
function scopeWhere(model: string, where: unknown, scope: TenantScope): Obj {
  const scoped = isObj(where) ? scopeRelationFilters(model, where, scope) : {};
  const condition = modelCondition(model, scope);
  if (!condition) return scoped;
  if (TENANT_MODELS.has(model)) {
    // Overwrite, never merge: a caller-supplied tenantId (also inside a
    // compound key) cannot widen the scope.
    for (const [key, value] of Object.entries(scoped)) {
      if (key.startsWith("tenantId_") && isObj(value)) scoped[key] = { ...value, tenantId: scope.tenantId };
    }
    return { ...scoped, tenantId: scope.tenantId };
  }
  const and = scoped.AND === undefined ? [] : Array.isArray(scoped.AND) ? scoped.AND : [scoped.AND];
  return { ...scoped, AND: [...and, condition] };
}

function scopeRelationFilters(model: string, where: Obj, scope: TenantScope): Obj {
  const out: Obj = {};
  const relations = relationsOf.get(model);
  for (const [key, value] of Object.entries(where)) {
    if ((key === "AND" || key === "OR" || key === "NOT") && value !== undefined) {
      out[key] = Array.isArray(value)
        ? value.map((v) => scopeRelationFilters(model, v as Obj, scope))
        : scopeRelationFilters(model, value as Obj, scope);
      continue;
    }
    const rel = relations?.get(key);
    if (rel && isObj(value)) {
      const filter: Obj = {};
      for (const [op, inner] of Object.entries(value)) {
        if (["some", "every", "none", "is", "isNot"].includes(op)) {
          filter[op] = inner === null ? null : scopeWhere(rel.type, inner, scope);
        } else {
          // a to-one relation filter written without `is`
          filter[op] = inner;
        }
      }
      const hasOps = Object.keys(value).some((op) => ["some", "every", "none", "is", "isNot"].includes(op));
      out[key] = hasOps ? filter : scopeWhere(rel.type, value, scope);
      continue;
    }
    out[key] = value;
  }
  return out;
}

/** Scopes the relations loaded through `select`/`include`, recursively. */
function scopeSelection(model: string, selection: unknown, scope: TenantScope): unknown {
  if (!isObj(selection)) return selection;
  const relations = relationsOf.get(model);
  const out: Obj = {};
  for (const [key, value] of Object.entries(selection)) {
    if (key === "_count" && value === true) {
      // `_count: true` counts every list relation: spell them out, scoped.
      const counts: Obj = {};
      for (const [name, f] of relations ?? []) if (f.isList) counts[name] = { where: scopeWhere(f.type, undefined, scope) };
      out[key] = { select: counts };
      continue;
    }
    if (key === "_count" && isObj(value) && isObj(value.select)) {
      const counts: Obj = {};
      for (const [rel, arg] of Object.entries(value.select)) {
        const target = relations?.get(rel)?.type;
        counts[rel] = target && arg ? { where: scopeWhere(target, isObj(arg) ? arg.where : undefined, scope) } : arg;
      }
      out[key] = { ...value, select: counts };
      continue;
    }
    const rel = relations?.get(key);
    if (!rel || !value) {
      out[key] = value;
      continue;
    }
    const args: Obj = value === true ? {} : { ...(value as Obj) };
    if (args.select) args.select = scopeSelection(rel.type, args.select, scope);
    if (args.include) args.include = scopeSelection(rel.type, args.include, scope);
    // Only list relations take a `where`. To-one relations between tenant
    // models share tenant_id in their foreign key, so they cannot cross.
    if (rel.isList) args.where = scopeWhere(rel.type, args.where, scope);
    else if (!TENANT_MODELS.has(model) && TENANT_MODELS.has(rel.type)) {
      throw new TenantScopeViolation(`to-one relation ${model}.${key} cannot be scoped`);
    }
    out[key] = args;
  }
  return out;
}

/**
 * "create": the tenant is forced into the row. "nested-create": a row created
 * through a relation; under a tenant-model parent it inherits the parent's
 * tenant through the foreign key, under a global parent (User) it gets the
 * scope's; naming another tenant is refused. "update": rows cannot move.
 */
type DataMode = "create" | "nested-create" | "update";

function scopeData(model: string, data: unknown, scope: TenantScope, mode: DataMode, inherits = false): unknown {
  if (Array.isArray(data)) return data.map((d) => scopeData(model, d, scope, mode, inherits));
  if (!isObj(data)) return data;
  if ("tenant" in data) throw new TenantScopeViolation(`${model}: write tenantId, not the tenant relation`);
  const relations = relationsOf.get(model);
  const out: Obj = {};
  for (const [key, value] of Object.entries(data)) {
    const rel = relations?.get(key);
    out[key] = rel && isObj(value) ? scopeNestedWrites(model, rel, value, scope) : value;
  }
  if (TENANT_MODELS.has(model)) {
    if (mode === "create") out.tenantId = scope.tenantId;
    else if ("tenantId" in out && out.tenantId !== scope.tenantId) {
      throw new TenantScopeViolation(
        mode === "update" ? `${model}: rows cannot move between tenants` : `${model}: nested create in another tenant`,
      );
    } else if (mode === "nested-create" && !inherits) out.tenantId = scope.tenantId;
  }
  return out;
}

/** Scopes the nested writes on one relation field of `data` (create, connect, updateMany, ...). */
function scopeNestedWrites(model: string, rel: FieldInfo, ops: Obj, scope: TenantScope): Obj {
  const target = rel.type;
  if (target === "Tenant") throw new TenantScopeViolation(`${model}.${rel.name}: tenants are changed by platform operations only`);
  const inherits = TENANT_MODELS.has(model) && TENANT_MODELS.has(target);
  const where = (w: unknown) => scopeWhere(target, w, scope);
  const each = (v: unknown, f: (x: Obj) => unknown) => (Array.isArray(v) ? v.map((x) => f(x as Obj)) : f(v as Obj));
  const create = (d: unknown) => scopeData(target, d, scope, "nested-create", inherits);
  const update = (d: unknown) => scopeData(target, d, scope, "update");
  const whereData = (x: Obj) => ({ ...x, ...(x.where !== undefined || rel.isList ? { where: where(x.where) } : {}), data: update(x.data) });
  const out: Obj = {};
  for (const [op, v] of Object.entries(ops)) {
    switch (op) {
      case "create":
        out[op] = create(v);
        break;
      case "createMany":
        out[op] = isObj(v) ? { ...v, data: create(v.data) } : v;
        break;
      case "connectOrCreate":
        out[op] = each(v, (x) => ({ ...x, where: where(x.where), create: create(x.create) }));
        break;
      case "upsert":
        out[op] = each(v, (x) => ({
          ...x,
          ...(x.where !== undefined || rel.isList ? { where: where(x.where) } : {}),
          create: create(x.create),
          update: update(x.update),
        }));
        break;
      case "update": {
        // to-one: the data itself, or { where?, data }; list: { where, data }
        const wrapped = isObj(v) && "data" in v && Object.keys(v).every((k) => k === "data" || k === "where");
        out[op] = rel.isList ? each(v, whereData) : wrapped ? whereData(v as Obj) : update(v);
        break;
      }
      case "updateMany":
        out[op] = each(v, whereData);
        break;
      case "delete":
      case "disconnect":
        out[op] = typeof v === "boolean" ? v : each(v, where);
        break;
      case "deleteMany":
      case "connect":
      case "set":
        out[op] = each(v, where);
        break;
      default:
        throw new TenantScopeViolation(`${model}.${rel.name}: unknown nested write ${op}`);
    }
  }
  return out;
}

const READS_AND_WHERE_WRITES = new Set([
  "findUnique",
  "findUniqueOrThrow",
  "findFirst",
  "findFirstOrThrow",
  "findMany",
  "count",
  "aggregate",
  "groupBy",
  "update",
  "updateMany",
  "updateManyAndReturn",
  "delete",
  "deleteMany",
]);

/** Rewrites the arguments of one operation so that it cannot leave the scope. */
export function scopeArgs(model: string, operation: string, rawArgs: unknown, scope: TenantScope): Obj {
  const args: Obj = isObj(rawArgs) ? { ...rawArgs } : {};
  const tenantModel = TENANT_MODELS.has(model);
  if (!tenantModel && model !== "User" && model !== "Tenant") {
    throw new TenantScopeViolation(`${model} is not reachable from a tenant-scoped client`);
  }
  const writes = !operation.startsWith("find") && !["count", "aggregate", "groupBy"].includes(operation);
  if (writes && model === "Tenant") throw new TenantScopeViolation("tenants are changed by platform operations only");
  if (model === "User" && (operation.startsWith("delete") || operation === "upsert")) {
    throw new TenantScopeViolation(`User.${operation} is not allowed from a tenant-scoped client`);
  }

  if (READS_AND_WHERE_WRITES.has(operation)) args.where = scopeWhere(model, args.where, scope);
  if (operation === "upsert") {
    args.where = scopeWhere(model, args.where, scope);
    args.create = scopeData(model, args.create, scope, "create");
    args.update = scopeData(model, args.update, scope, "update");
  }
  if (operation.startsWith("create")) args.data = scopeData(model, args.data, scope, "create");
  if (operation.startsWith("update")) args.data = scopeData(model, args.data, scope, "update");
  if (args.select) args.select = scopeSelection(model, args.select, scope);
  if (args.include) args.include = scopeSelection(model, args.include, scope);
  return args;
}

/** The extension itself: every model operation passes through scopeArgs. */
export function tenantScope(scope: TenantScope) {
  return Prisma.defineExtension({
    name: "tenant-scope",
    query: {
      $allModels: {
        $allOperations({ model, operation, args, query }) {
          return query(scopeArgs(model, operation, args, scope) as typeof args);
        },
      },
    },
  });
}
