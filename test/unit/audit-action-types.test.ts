import { describe, expect, expectTypeOf, it } from "vitest";
import { AUDIT_ACTIONS, type AuditAction } from "../../src/db/audit-actions.ts";
import type { changeTenant } from "../../src/modules/platform/tenant-lifecycle.service.ts";

/**
 * The audit action of a tenant change is checked by the compiler, not at
 * run time (issue 17): `npm run typecheck` fails this file when
 * changeTenant takes any string again.
 */
type TenantAction = Extract<AuditAction, `tenant.${string}`>;

describe("changeTenant's audit action", () => {
  it("is a tenant action of AUDIT_ACTIONS, by type", () => {
    expectTypeOf<Parameters<typeof changeTenant>[1]>().toEqualTypeOf<TenantAction>();
    expectTypeOf<"tenant.nope">().not.toExtend<Parameters<typeof changeTenant>[1]>();
    const tenantActions = AUDIT_ACTIONS.filter((a): a is TenantAction => a.startsWith("tenant."));
    expect(tenantActions).toContain("tenant.setIdentityProvider");
  });
});
