import { isObj, relationsOf, TENANT_MODELS, TenantScopeViolation, type FieldInfo, type Obj, type TenantScope } from "./tenant-scope-model.ts";
import { scopeWhere } from "./tenant-scope-reads.ts";

/** The tenant scope of what an operation writes: the rows it creates or updates, and its nested writes. */

/**
 * "create": the tenant is forced into the row. "nested-create": a row created
 * through a relation; under a tenant-model parent it inherits the parent's
 * tenant through the foreign key, under a global parent (User) it gets the
 * scope's; naming another tenant is refused. "update": rows cannot move.
 */
type DataMode = "create" | "nested-create" | "update";

export function scopeData(model: string, data: unknown, scope: TenantScope, mode: DataMode, inherits = false): unknown {
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
