import { describe, expect, it } from "vitest";
import { enforce } from "../../src/policy/enforcer.ts";
import { crossTenant, crossTenantReader } from "../../src/policy/platform.ts";
import type { Context } from "../../src/tenancy/context.ts";
import { bindPlatformClient } from "../../src/tenancy/platform-client.ts";

/** A platform admin's context with a platform client that runs and records its transactions, and placements. */
function adminContext() {
  const calls: string[] = [];
  const tx = {
    platformAuditEntry: { create: async () => void calls.push("audit") },
    auditLogEntry: { create: async () => (calls.push("tenant audit"), { id: "e-1" }) },
  };
  const platform = {
    $transaction: async (fn: (tx: unknown) => Promise<unknown>) => {
      calls.push("transaction");
      return fn(tx);
    },
  };
  const placements = { admin: {} };
  const ctx = { isPlatformAdmin: true, actor: { type: "USER", id: "u-1", label: "admin@test" }, user: { id: "u-1", email: "admin@test" }, requestId: "r-1", ip: null } as unknown as Context;
  bindPlatformClient(ctx, platform as never, placements as never);
  return { ctx, calls, placements };
}

/** A @crossTenant field's resolver as the enforcer wraps it. */
const crossTenantField = <T>(resolver: (ctx: Context) => T) =>
  enforce((_parent, _args, ctx) => resolver(ctx as Context), { crossTenant: true }, "Query.probe") as (parent: unknown, args: object, ctx: Context, info: never) => T;

const OFF_PATH = /only on the cross-tenant path/;

describe("the cross-tenant path (issue 17 point 2, review-1745 F1)", () => {
  it("crossTenant() refuses a caller off the path, even a platform admin's", async () => {
    const { ctx, calls } = adminContext();
    await expect(crossTenant(ctx, { action: "tenant.export" }, async () => "done")).rejects.toThrow(OFF_PATH);
    expect(calls).toEqual([]);
  });

  it("inside an admitted @crossTenant field's resolver it answers, audited first, and hands the placements to the callback", async () => {
    const { ctx, calls, placements } = adminContext();
    const field = crossTenantField((c) => crossTenant(c, { action: "platform.totals" }, async (_tx, platformPlacements) => platformPlacements()));
    expect(await field(null, {}, ctx, undefined as never)).toBe(placements);
    expect(calls).toEqual(["transaction", "audit"]);
  });

  it("the placements handed to the callback are refused once its transaction is over", async () => {
    const { ctx } = adminContext();
    const leaked = await crossTenantField((c) => crossTenant(c, { action: "platform.totals" }, async (_tx, platformPlacements) => platformPlacements))(null, {}, ctx, undefined as never);
    expect(() => leaked()).toThrow(OFF_PATH);
  });

  it("the path does not outlast the admitted field: after it returned, or failed, later code of the request is refused", async () => {
    const { ctx, calls } = adminContext();
    // `{ platform { __typename } }`: admitted, returns, nothing audited.
    expect(crossTenantField(() => ({ platform: true }))(null, {}, ctx, undefined as never)).toEqual({ platform: true });
    await expect(crossTenant(ctx, { action: "platform.totals" }, async () => 1)).rejects.toThrow(OFF_PATH);
    // A @crossTenant field that fails (its input did not decode).
    await expect(
      crossTenantField(async () => {
        throw new Error("bad input");
      })(null, {}, ctx, undefined as never),
    ).rejects.toThrow("bad input");
    await expect(crossTenant(ctx, { action: "platform.totals" }, async () => 1)).rejects.toThrow(OFF_PATH);
    expect(calls).toEqual([]);
  });

  it("a sibling field of the same request, resolving while an admitted one is pending, is refused", async () => {
    const { ctx } = adminContext();
    let release!: () => void;
    const pending = crossTenantField(async (c) => {
      await new Promise<void>((r) => (release = r));
      return crossTenant(c, { action: "platform.totals" }, async () => "admitted");
    })(null, {}, ctx, undefined as never);
    await expect(crossTenant(ctx, { action: "platform.totals" }, async () => "sibling")).rejects.toThrow(OFF_PATH);
    release();
    expect(await pending).toBe("admitted");
  });

  it("the path is the request's own: another request's admitted field does not open it", async () => {
    const { ctx } = adminContext();
    const other = adminContext().ctx;
    await expect(crossTenantField(() => crossTenant(ctx, { action: "platform.totals" }, async () => 1))(null, {}, other, undefined as never)).rejects.toThrow(OFF_PATH);
  });

  it("crossTenantReader: a placement not the tenant's fails before anything is audited, and leaves nothing open", async () => {
    const { ctx, calls } = adminContext();
    const tenantId = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    await expect(
      crossTenantReader(ctx, { action: "tenant.export", tenantIds: [tenantId] }, { placement: "SCHEMA", server: "main", name: "tenant_00000000000000000000000000000000" } as never, async () => {}),
    ).rejects.toThrow(/placement does not belong to the tenant/);
    expect(calls).toEqual([]);
    await expect(crossTenant(ctx, { action: "platform.totals" }, async () => 1)).rejects.toThrow(OFF_PATH);
  });

  it("crossTenantReader: the reader comes only after the audited prepare, whose callback gets the placements", async () => {
    const { ctx, calls, placements } = adminContext();
    let handed: unknown;
    await crossTenantReader(ctx, { action: "tenant.export", tenantIds: ["7c9e6679-7425-40de-944b-e07fc1f90ae7"] }, undefined, async (_tx, platformPlacements) => {
      handed = platformPlacements();
    });
    expect(handed).toBe(placements);
    expect(calls).toEqual(["transaction", "audit", "tenant audit"]);
    await expect(crossTenant(ctx, { action: "platform.totals" }, async () => 1)).rejects.toThrow(OFF_PATH);
  });
});
