import { describe, expect, it } from "vitest";
import { assertPlacementOf, placementFor } from "../../src/db/placement-admin.ts";

// A tenant's route comes from the directory cache (Redis), which only
// proposes: the request path accepts a placement only if its name is the one
// derived from that tenant's id.
const a = "6f1c1f0e-6a55-4c4e-9d5e-0b7d3c1e2a10";
const b = "0a9e8d7c-6b5a-4e3d-8c2b-1a0f9e8d7c6b";

describe("assertPlacementOf", () => {
  it("accepts a tenant's own SCHEMA and DATABASE placements and POOLED", () => {
    expect(() => assertPlacementOf(a, placementFor(a, "SCHEMA"))).not.toThrow();
    expect(() => assertPlacementOf(a, placementFor(a, "DATABASE"))).not.toThrow();
    expect(() => assertPlacementOf(a, placementFor(a, "POOLED"))).not.toThrow();
  });

  it("refuses another tenant's placement", () => {
    expect(() => assertPlacementOf(a, placementFor(b, "SCHEMA"))).toThrow(/does not belong/);
    expect(() => assertPlacementOf(a, placementFor(b, "DATABASE"))).toThrow(/does not belong/);
  });

  it("refuses a name that is not a placement's (it would be inlined into SQL)", () => {
    const evil = { placement: "SCHEMA" as const, server: null, name: `public", set_config('app.tenant_id', '${b}', false) --` };
    expect(() => assertPlacementOf(a, evil)).toThrow(/invalid placement/);
    expect(() => assertPlacementOf(a, { placement: "DATABASE", server: "default", name: "postgres" })).toThrow(/invalid placement/);
  });
});
