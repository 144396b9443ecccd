import { isObj, relationsOf, TENANT_MODELS, TenantScopeViolation, type Obj, type TenantScope } from "./tenant-scope-model.ts";

/** The tenant scope of what an operation reads: its `where` (relation filters included) and the relations it loads. */

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
export function scopeWhere(model: string, where: unknown, scope: TenantScope): Obj {
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
export function scopeSelection(model: string, selection: unknown, scope: TenantScope): unknown {
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
