import type { Plan } from "../generated/prisma/enums.ts";

/**
 * Plan features (SPEC section 10, docs/tenant-config.md). A field or type
 * that needs one carries `@feature(name: ...)`, enforced by the policy
 * enforcer; API keys need `api_access` (src/tenancy/authorize.ts), a
 * tenant's own identity provider `sso`, a custom domain `custom_domain`.
 */
export const FEATURES = ["api_access", "advanced_analytics", "sso", "custom_domain"] as const;
export type Feature = (typeof FEATURES)[number];

export const isFeature = (name: string): name is Feature => (FEATURES as readonly string[]).includes(name);

export const PLAN_FEATURES: Record<Plan, readonly Feature[]> = {
  FREE: [],
  PRO: ["api_access", "advanced_analytics"],
  ENTERPRISE: ["api_access", "advanced_analytics", "sso", "custom_domain"],
};

/**
 * A tenant's features: its override when a platform admin set one
 * (`tenants.feature_overrides`, a JSON array), else its plan's. Unknown
 * names in an override are ignored (never granted).
 */
export function effectiveFeatures(plan: Plan, overrides: unknown): Feature[] {
  if (!Array.isArray(overrides)) return [...PLAN_FEATURES[plan]];
  return FEATURES.filter((f) => overrides.includes(f));
}

export const sameFeatures = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((f) => b.includes(f));
