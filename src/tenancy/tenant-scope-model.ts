import { getDatamodel } from "../generated/pothos-types.ts";

/** What the tenant scope (tenant-scope.ts) knows: the scope, the tenant-owned models and their relations, and its refusal. */

export interface FieldInfo {
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

export const relationsOf = new Map<string, Map<string, FieldInfo>>(
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

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export interface TenantScope {
  tenantId: string;
  /** The calling user, who may see their own user row. */
  userId?: string | null;
}
