import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { placementOf, type PlacementRef } from "../../src/db/placement-admin.ts";
import { moveFenceSql } from "../../src/db/placement-fence.ts";
import { placementPoolsOf } from "../../src/db/clients.ts";
import { ApiKeyUse } from "../../src/tenancy/last-used.ts";
import type { TestApp } from "../helpers/app.ts";
import { placementApp, tenantRows } from "../helpers/placements.ts";

/**
 * `ApiKey.lastUsedAt` of a placed tenant (docs/placement.md, "The directory
 * and the placement"): its key's last use is written in its placement, where
 * the tenant reads its keys. Before, it was written in the main database only
 * and the placement's copy, which the tenant reads, stayed null.
 */

const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;
const KEY = `mutation($name: String!) { createApiKey(input: { name: $name, role: VIEWER }) { secret apiKey { id } } }`;
const LAST_USED = `query($id: ID!) { node(id: $id) { ... on ApiKey { lastUsedAt } } }`;

describe("an API key's last use in a placed tenant", () => {
  const placed = placementApp();
  let t: TestApp;
  beforeAll(() => ({ t } = placed));
  const suffix = Math.random().toString(36).slice(2, 8);

  /** A tenant of `placement` with one VIEWER key (its secret, node id, row id). */
  async function placedWithKey(tag: string, placement: "SCHEMA" | "DATABASE") {
    const slug = `lu-${tag}-${suffix}`;
    const made = await t.gql(PROVISION, { token: placed.admin, variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` }, placement } } });
    expect(made.body.errors).toBeUndefined();
    const row = await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } });
    const ref = placementOf(row);
    placed.made.push(ref);
    const owner = await t.token(`owner@${slug}.test`, slug);
    const key = await t.gql(KEY, { token: owner, variables: { name: "ci" } });
    expect(key.body.errors).toBeUndefined();
    const { secret, apiKey } = key.body.data.createApiKey as { secret: string; apiKey: { id: string } };
    const keyRow = await (await tenantRows(t.clients, row.id)).apiKey.findFirstOrThrow({ where: { tenantId: row.id, name: "ci" } });
    return { slug, tenantId: row.id, ref, owner, secret, nodeId: apiKey.id, keyId: keyRow.id };
  }

  it.each(["SCHEMA", "DATABASE"] as const)("a %s tenant's key used in a request shows its lastUsedAt to the tenant", async (placement) => {
    const k = await placedWithKey(`req-${placement.toLowerCase()}`, placement);
    const before = await t.gql(LAST_USED, { token: k.owner, variables: { id: k.nodeId } });
    expect(before.body.data.node.lastUsedAt).toBeNull();
    const used = await t.gql(`{ tenant { slug } }`, { headers: { "x-api-key": k.secret } });
    expect(used.body.errors).toBeUndefined();
    // The request does not wait for the write: the app's writes under way are awaited, then the tenant sees it (read in its placement).
    await t.settle();
    const res = await t.gql(LAST_USED, { token: k.owner, variables: { id: k.nodeId } });
    expect(res.body.data.node.lastUsedAt).not.toBeNull();
    const seen = Date.parse(res.body.data.node.lastUsedAt as string);
    const inPlacement = await (await tenantRows(t.clients, k.tenantId)).apiKey.findFirstOrThrow({ where: { id: k.keyId } });
    expect(inPlacement.lastUsedAt?.getTime()).toBe(seen);
  });

  /** The move fence as a move holds it in the tenant's source database (the placement's own for DATABASE, the main one for SCHEMA). */
  async function holdingFence<T>(k: { tenantId: string; ref: PlacementRef }, fn: () => Promise<T>): Promise<T> {
    const fence = new pg.Client({ connectionString: t.clients.placements.admin.databaseUrl(k.ref) });
    await fence.connect();
    try {
      await fence.query(`SELECT pg_advisory_lock(${moveFenceSql("$1::text")})`, [k.tenantId]);
      return await fn();
    } finally {
      await fence.end();
    }
  }

  it.each(["SCHEMA", "DATABASE"] as const)("a %s tenant's last use is not written while a move holds its fence, nor into a copy that no longer names itself", async (placement) => {
    const k = await placedWithKey(`fence-${placement.toLowerCase()}`, placement);
    const rows = await tenantRows(t.clients, k.tenantId);
    const lastUsed = async () => (await rows.apiKey.findFirstOrThrow({ where: { id: k.keyId } })).lastUsedAt?.getTime() ?? null;
    const on = { pools: placementPoolsOf(t.clients.app), ref: k.ref };
    const key = { id: k.keyId, tenantId: k.tenantId };
    const t0 = Date.UTC(2031, 0, 1, 12, 0, 0);
    const uses = new ApiKeyUse(t.clients.platform);
    await holdingFence(k, async () => uses.note(key, t0, on));
    expect(await lastUsed()).toBeNull();
    // A copy whose tenants row names another placement (a move switched away from it): nothing written.
    await rows.$executeRawUnsafe(`UPDATE tenants SET placement = 'POOLED', placement_server = NULL, placement_name = NULL WHERE id = $1::uuid`, k.tenantId);
    await uses.note(key, t0 + 1_000, on);
    expect(await lastUsed()).toBeNull();
    await rows.$executeRawUnsafe(`UPDATE tenants SET placement = $2::"Placement", placement_server = $3, placement_name = $4 WHERE id = $1::uuid`, k.tenantId, k.ref.placement, k.ref.server, k.ref.name);
    // Neither counted as written: the next use (within the minute) writes it.
    await uses.note(key, t0 + 2_000, on);
    expect(await lastUsed()).toBe(t0 + 2_000);
  });
});
