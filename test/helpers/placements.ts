import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import type { Databases } from "../../src/db/clients.ts";
import { placementFor, placementKey, placementOf, POOLED, type PlacementAdmin, type PlacementRef } from "../../src/db/placement-admin.ts";
import { relocatePooledTenant } from "../../src/db/placement-move.ts";
import { pgQuery } from "../../src/db/placement-rows.ts";
import { syncToDirectory, syncToPlacement } from "../../src/db/placement-sync.ts";
import { PrismaPg } from "@prisma/adapter-pg";
import { PLATFORM_ROLE } from "../../src/db/clients.ts";
import { PrismaClient } from "../../src/generated/prisma/client.ts";
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

const SPREAD_TURN = ["POOLED", "SCHEMA", "DATABASE"] as const;
let spreadTurn = 0;

/**
 * TEST_PLACEMENTS=spread: a tenant a test made (POOLED) goes to the next
 * placement in turn (POOLED, SCHEMA, DATABASE), so a file's fresh tenants
 * cover all three; otherwise it stays POOLED. The test app's clean-up drops
 * the placements.
 */
export async function spreadTenant(clients: Pick<Databases, "placements">, tenantId: string): Promise<PlacementRef> {
  if (!spreadPlacements()) return POOLED;
  const placement = SPREAD_TURN[spreadTurn++ % SPREAD_TURN.length]!;
  if (placement === "POOLED") return POOLED;
  const ref = placementFor(tenantId, placement);
  await relocatePooledTenant(clients.placements.admin, tenantId, ref);
  return ref;
}

/** The tenant's placement, as the directory row of the main database names it (by id or slug). */
export async function placementOfTenant(clients: Pick<Databases, "platform">, tenant: string): Promise<{ id: string; ref: PlacementRef }> {
  const isId = /^[0-9a-f-]{36}$/i.test(tenant);
  const row = await clients.platform.tenant.findUniqueOrThrow({ where: isId ? { id: tenant } : { slug: tenant } });
  return { id: row.id, ref: placementOf(row) };
}

/**
 * The platform role's client where the tenant's rows live: its placement's
 * (SCHEMA, DATABASE), or the shared tables' for a POOLED tenant. Fixtures
 * read and seed a tenant's data through it, so they work whatever the
 * tenant's placement (TEST_PLACEMENTS=spread).
 */
export async function tenantRows(clients: Pick<Databases, "platform" | "placements">, tenant: string): Promise<PrismaClient> {
  const { ref } = await placementOfTenant(clients, tenant);
  return ref.placement === "POOLED" ? clients.platform : placedClient(clients.placements.admin, ref);
}

const placedClients = new Map<string, PrismaClient>();

/**
 * The platform role's client in a placement, for fixtures: its connections
 * start with the placement's schema as their search_path, so raw SQL finds
 * the placement's tables too (the app's placement clients name the schema
 * in Prisma's SQL only; its raw SQL sets search_path per transaction).
 * Small pools that let the process exit; the placements' drop ends them.
 */
function placedClient(admin: PlacementAdmin, ref: PlacementRef): PrismaClient {
  const url = admin.databaseUrl(ref);
  const key = `${url}|${placementKey(ref)}`;
  let client = placedClients.get(key);
  if (!client) {
    const searchPath = ref.placement === "SCHEMA" ? ` -c search_path=${ref.name}` : "";
    const pool = new pg.Pool({ connectionString: url, max: 2, idleTimeoutMillis: 1_000, allowExitOnIdle: true, options: `-c role=${PLATFORM_ROLE}${searchPath}` });
    pool.on("error", () => {});
    client = new PrismaClient({ adapter: new PrismaPg(pool, { schema: ref.placement === "SCHEMA" ? ref.name! : undefined }) });
    placedClients.set(key, client);
  }
  return client;
}

/**
 * A fixture's write of the tenant's own rows, as the tenant's mutation
 * makes it: `fn` runs on tenantRows' client; for a placed tenant, the
 * identities `users` names are copied into the placement first (its rows'
 * foreign keys need them), and its memberships and API keys are brought
 * back to the main database afterwards (src/db/placement-sync.ts), where
 * the directory finds them.
 */
export async function writeTenantRows<T>(
  clients: Pick<Databases, "platform" | "placements">,
  tenant: string,
  fn: (db: PrismaClient) => Promise<T>,
  options: { users?: string[] } = {},
): Promise<T> {
  const { id, ref } = await placementOfTenant(clients, tenant);
  if (ref.placement === "POOLED") return fn(clients.platform);
  const db = placedClient(clients.placements.admin, ref);
  for (const userId of options.users ?? []) {
    const user = await clients.platform.user.findUniqueOrThrow({ where: { id: userId } });
    await db.user.upsert({ where: { id: userId }, create: user, update: {} });
  }
  const out = await fn(db);
  await syncToDirectory(clients.placements.admin, ref, id);
  return out;
}

/**
 * A fixture's platform change of the tenant (its tenants row, limit
 * overrides, cache TTL): `fn` runs on the main database, then, for a placed
 * tenant, the change is copied into its placement as a platform change is
 * (src/db/placement-sync.ts), where the request's facts are read.
 */
export async function changeTenantRow<T>(clients: Pick<Databases, "platform" | "placements" | "platformPool">, tenant: string, fn: (platform: PrismaClient) => Promise<T>): Promise<T> {
  const { id, ref } = await placementOfTenant(clients, tenant);
  const out = await fn(clients.platform);
  if (ref.placement !== "POOLED") {
    const main = await clients.platformPool.connect();
    try {
      await syncToPlacement(clients.placements.admin, ref, id, pgQuery(main));
    } finally {
      main.release();
    }
  }
  return out;
}

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

/**
 * One statement on a connection of its own (`schema`: its search_path, for
 * catalog text naming functions). JIT off, as in the test databases
 * (test/helpers/db.ts): a placement's database is made by the app, without
 * that setting, and a check with many subqueries would be compiled for seconds.
 */
export async function sql<R = Record<string, unknown>>(url: string, text: string, params: unknown[] = [], schema?: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url, options: "-c jit=off" });
  await c.connect();
  try {
    if (schema) await c.query(`SET search_path TO "${schema}"`);
    return (await c.query(text, params)).rows as R[];
  } finally {
    await c.end();
  }
}
