import type { Databases } from "../../src/db/clients.ts";
import { placementFor, placementOf } from "../../src/db/placement-admin.ts";
import { relocatePooledTenant } from "../../src/db/placement-move.ts";

/**
 * TEST_PLACEMENTS=spread: the demo tenants over the three placements
 * (acme POOLED, globex SCHEMA, wayne DATABASE), so the isolation battery
 * runs with tenants in every placement (docs/placement.md). Answers the
 * clean-up that drops the placements.
 */
export async function spreadDemoTenants(clients: Databases): Promise<() => Promise<void>> {
  const admin = clients.placements.admin;
  const placed: ReturnType<typeof placementFor>[] = [];
  for (const [slug, placement] of [["globex", "SCHEMA"], ["wayne", "DATABASE"]] as const) {
    const tenant = await clients.platform.tenant.findUnique({ where: { slug } });
    if (!tenant) continue;
    const ref = placementFor(tenant.id, placement);
    await relocatePooledTenant(admin, tenant.id, ref);
    placed.push(ref);
  }
  return async () => {
    await clients.placements.close();
    for (const t of await clients.platform.tenant.findMany({ where: { placement: { not: "POOLED" } } }).catch(() => [])) {
      await admin.drop(placementOf(t)).catch(() => {});
    }
    for (const ref of placed) await admin.drop(ref).catch(() => {});
  };
}

export const spreadPlacements = () => process.env.TEST_PLACEMENTS === "spread";
