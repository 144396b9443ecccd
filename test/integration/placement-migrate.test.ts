import { beforeAll, describe, expect, it } from "vitest";
import { placementKey, placementOf, type PlacementRef } from "../../src/db/placement-admin.ts";
import type { TestApp } from "../helpers/app.ts";
import { placementApp, sql } from "../helpers/placements.ts";
import { runTs } from "../helpers/server-process.ts";

/**
 * `npm run db:migrate` migrates every placement (issue 15 point 1): one that
 * fails does not stop the others, every failure is reported, and the run
 * exits non-zero (docs/placement.md, "Provisioning").
 */
const PROVISION = `mutation($input: ProvisionTenantInput!) { provisionTenant(input: $input) { tenant { id } } }`;

describe("db:migrate over placements that fail", () => {
  const app = placementApp();
  let t: TestApp;
  let admin: string;
  beforeAll(() => ({ t, admin } = app));

  async function placed(slug: string, placement: "SCHEMA" | "DATABASE"): Promise<PlacementRef> {
    const res = await t.gql(PROVISION, { token: admin, variables: { input: { name: slug, slug, plan: "PRO", owner: { email: `owner@${slug}.test` }, placement } } });
    expect(res.body.errors).toBeUndefined();
    const ref = placementOf(await t.clients.platform.tenant.findFirstOrThrow({ where: { slug } }));
    app.made.push(ref);
    return ref;
  }

  /** A DATABASE placement made unreachable under its name (renamed away), until `restore` is called. */
  async function unreachable(ref: PlacementRef) {
    const rename = async (from: string, to: string) => {
      await sql(t.db.url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [from]);
      await sql(t.db.url, `ALTER DATABASE "${from}" RENAME TO "${to}"`);
    };
    const away = `${ref.name}_away`;
    await rename(ref.name!, away);
    return () => rename(away, ref.name!);
  }

  it("goes on past failing placements, reports each of them, and db:migrate exits non-zero", async () => {
    const broken = [await placed("migrate-broken-1", "DATABASE"), await placed("migrate-broken-2", "DATABASE")];
    const fine = await placed("migrate-fine", "SCHEMA");
    const restores = [];
    try {
      for (const ref of broken) restores.push(await unreachable(ref));
      const lines: string[] = [];
      const { placements, failures } = await t.clients.placements.admin.migrateAll((l) => lines.push(l));
      // Every placement the directory names was tried, the fine one migrated after or between the broken ones.
      expect(placements).toBe((await t.clients.platform.tenant.count({ where: { placement: { not: "POOLED" } } })));
      expect(failures.map((f) => f.placement).sort()).toEqual(broken.map(placementKey).sort());
      expect(lines).toContain(`placement ${placementKey(fine)}: 0 applied`);

      const run = await runTs("scripts/migrate.ts", [], { DATABASE_URL: t.db.url });
      expect(run.code).toBe(1);
      for (const ref of broken) expect(run.stderr).toContain(`placement ${placementKey(ref)} failed`);
      expect(run.stdout).toContain(`placement ${placementKey(fine)}: 0 applied`);
    } finally {
      for (const restore of restores) await restore();
    }
    // Reachable again, they migrate, and so does the run.
    expect((await t.clients.placements.admin.migrateAll()).failures).toEqual([]);
    expect((await runTs("scripts/migrate.ts", [], { DATABASE_URL: t.db.url })).code).toBe(0);
  }, 120_000);
});
