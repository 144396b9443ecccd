import type { QuotaResource, Role } from "../generated/prisma/enums.ts";
import { ROLE_RANK } from "./roles.ts";

/** What a field's directives (and its type's @auth and @feature) ask of a call: read once, when the schema is built. */
export interface FieldPolicy {
  auth?: Role;
  crossTenant: boolean;
  quota?: { resource: QuotaResource; cost: number };
  audit?: string;
  /** The plan feature the tenant needs (@feature, on the field or its type). */
  feature?: string;
}

type DirectiveArgs = Record<string, unknown>;

/** plugin-directives stores `{ name: args | args[] }` (unordered) or `[{ name, args }]`. */
export function directiveList(directives: unknown): { name: string; args: DirectiveArgs }[] {
  if (!directives) return [];
  if (Array.isArray(directives)) {
    return directives.map((d: { name: string; args?: DirectiveArgs }) => ({ name: d.name, args: d.args ?? {} }));
  }
  return Object.entries(directives as Record<string, unknown>).flatMap(([name, args]) =>
    Array.isArray(args) ? args.map((a) => ({ name, args: (a ?? {}) as DirectiveArgs })) : [{ name, args: (args ?? {}) as DirectiveArgs }],
  );
}

export function policyOf(fieldDirectives: unknown, typeDirectives?: unknown): FieldPolicy {
  const policy: FieldPolicy = { crossTenant: false };
  // The type's @auth and @feature apply to every field of the type; a field's own win.
  for (const d of [...directiveList(typeDirectives).filter((d) => d.name === "auth" || d.name === "feature"), ...directiveList(fieldDirectives)]) {
    switch (d.name) {
      case "auth":
        policy.auth = ((d.args.requires as Role | undefined) ?? "VIEWER") as Role;
        if (!(policy.auth in ROLE_RANK)) throw new Error(`@auth: unknown role ${String(policy.auth)}`);
        break;
      case "crossTenant":
        policy.crossTenant = true;
        break;
      case "quota":
        policy.quota = { resource: d.args.resource as QuotaResource, cost: Number(d.args.cost ?? 1) };
        if (!Number.isInteger(policy.quota.cost) || policy.quota.cost < 1) throw new Error("@quota: cost must be a positive integer");
        break;
      case "feature":
        policy.feature = String(d.args.name);
        if (!/^[a-z][a-z_]*$/.test(policy.feature)) throw new Error(`@feature: "${policy.feature}" is not a feature name`);
        break;
      case "audit":
        policy.audit = String(d.args.action);
        if (!/^[a-z][A-Za-z]*\.[a-z][A-Za-z]*$/.test(policy.audit)) throw new Error(`@audit: action "${policy.audit}" is not <noun>.<verb>`);
        break;
    }
  }
  return policy;
}

export const isEnforced = (p: FieldPolicy) => !!(p.auth || p.crossTenant || p.quota || p.audit || p.feature);
