import { describe, expect, it } from "vitest";
import { enterCrossTenantPath } from "../../src/policy/cross-tenant-path.ts";
import { crossTenant, platformPlacements } from "../../src/policy/platform.ts";
import type { Context } from "../../src/tenancy/context.ts";
import { bindPlatformClient } from "../../src/tenancy/platform-client.ts";

/** A platform admin's context with a platform client that records its transactions, and placements. */
function adminContext() {
  const calls: string[] = [];
  const platform = { $transaction: async () => void calls.push("transaction") };
  const placements = { admin: {} };
  const ctx = { isPlatformAdmin: true, actor: { type: "USER", id: "u-1", label: "admin@test" }, user: { id: "u-1", email: "admin@test" }, requestId: "r-1", ip: null } as unknown as Context;
  bindPlatformClient(ctx, platform as never, placements as never);
  return { ctx, calls, placements };
}

describe("the cross-tenant path (issue 17 point 2)", () => {
  it("platformPlacements() and crossTenant() refuse a caller off the path, even a platform admin's", async () => {
    const { ctx, calls } = adminContext();
    expect(() => platformPlacements(ctx)).toThrow(/only on the cross-tenant path/);
    await expect(crossTenant(ctx, { action: "tenant.export" }, async () => "done")).rejects.toThrow(/only on the cross-tenant path/);
    expect(calls).toEqual([]);
  });

  it("on the path (a request admitted to a @crossTenant field) they answer", async () => {
    const { ctx, calls, placements } = adminContext();
    enterCrossTenantPath(ctx);
    expect(platformPlacements(ctx)).toBe(placements);
    await crossTenant(ctx, { action: "tenant.export" }, async () => "done");
    expect(calls).toEqual(["transaction"]);
  });

  it("the path is the request's own: another request's does not open it", () => {
    const { ctx } = adminContext();
    enterCrossTenantPath(adminContext().ctx);
    expect(() => platformPlacements(ctx)).toThrow(/only on the cross-tenant path/);
  });
});
