import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import type { Databases } from "../../src/db/clients.ts";
import { placementFor, placementOf, type PlacementRef } from "../../src/db/placement-admin.ts";
import { relocatePooledTenant } from "../../src/db/placement-move.ts";
import { createTestApp, type TestApp } from "./app.ts";
import { isolatedStore } from "./isolated-store.ts";

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

/**
 * The test app of a placement test file (call it inside `describe`): a
 * platform admin's token, and the placements the tests made (`made`),
 * dropped after the file with the app.
 */
export function placementApp(): { t: TestApp; admin: string; made: PlacementRef[] } {
  const app = { made: [] as PlacementRef[] } as { t: TestApp; admin: string; made: PlacementRef[] };
  beforeAll(async () => {
    app.t = await createTestApp({ store: isolatedStore() });
    app.admin = await app.t.adminToken();
  });
  afterAll(async () => {
    for (const ref of app.made) await app.t?.clients.placements.admin.drop(ref).catch(() => {});
    await app.t?.close();
    await app.t?.store.close();
  });
  return app;
}

/** One statement on a connection of its own (`schema`: its search_path, for catalog text naming functions). */
export async function sql<R = Record<string, unknown>>(url: string, text: string, params: unknown[] = [], schema?: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    if (schema) await c.query(`SET search_path TO "${schema}"`);
    return (await c.query(text, params)).rows as R[];
  } finally {
    await c.end();
  }
}
