import { createHash } from "node:crypto";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIGRATIONS_DIR, runMigrations } from "../../src/db/migrate.ts";
import { createEmptyDatabase, migrateTestDatabase, testServerUrl, type TestDatabase } from "../helpers/db.ts";
import { query } from "../helpers/catalog.ts";

/** The migration runner: applies each migration once, records checksums, refuses edited ones. */

const dropLater: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dropLater.map((d) => d.drop()));
});

async function migrationNames(dir = MIGRATIONS_DIR): Promise<string[]> {
  return (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

describe("runMigrations", () => {
  it("applies every migration once, records it with its checksum, and applies nothing the second time", async () => {
    const db = await createEmptyDatabase();
    dropLater.push(db);
    const names = await migrationNames();
    expect(names.length).toBeGreaterThan(0);

    const first = await migrateTestDatabase(testServerUrl(), db.url);
    expect(first.applied).toEqual(names);
    expect(first.skipped).toEqual([]);

    const second = await migrateTestDatabase(testServerUrl(), db.url);
    expect(second.applied).toEqual([]);
    expect(second.skipped).toEqual(names);

    const rows = await query<{ migration_name: string; checksum: string; finished_at: Date | null; rolled_back_at: Date | null }>(
      db.url,
      `SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" ORDER BY migration_name`,
    );
    const expected = await Promise.all(
      names.map(async (name) => ({
        migration_name: name,
        checksum: createHash("sha256")
          .update(await readFile(path.join(MIGRATIONS_DIR, name, "migration.sql"), "utf8"))
          .digest("hex"),
      })),
    );
    expect(rows.map((r) => ({ migration_name: r.migration_name, checksum: r.checksum }))).toEqual(expected);
    for (const r of rows) {
      expect(r.finished_at, r.migration_name).toBeInstanceOf(Date);
      expect(r.rolled_back_at, r.migration_name).toBeNull();
    }
  });

  describe("with a copy of the migrations", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), "tg-migrations-"));
      await cp(MIGRATIONS_DIR, dir, { recursive: true });
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it("applies only a newly added migration, then refuses a migration edited after it was applied", async () => {
      const db = await createEmptyDatabase();
      dropLater.push(db);
      const names = await migrationNames(dir);
      expect((await migrateTestDatabase(testServerUrl(), db.url, { dir })).applied).toEqual(names);

      const added = "29991231000000_added_later";
      await mkdir(path.join(dir, added));
      await writeFile(path.join(dir, added, "migration.sql"), `CREATE TABLE "zz_added_later" ("id" INTEGER PRIMARY KEY);\n`);
      const again = await migrateTestDatabase(testServerUrl(), db.url, { dir });
      expect(again.applied).toEqual([added]);
      expect(again.skipped).toEqual(names);

      const edited = path.join(dir, names[0]!, "migration.sql");
      await writeFile(edited, `${await readFile(edited, "utf8")}\n-- edited after it was applied\n`);
      await expect(runMigrations(db.url, { dir })).rejects.toThrow(/checksum/);
      // Refused before anything ran: the history is unchanged.
      const rows = await query<{ n: number }>(db.url, `SELECT count(*)::int AS n FROM "_prisma_migrations"`);
      expect(rows[0]!.n).toBe(names.length + 1);
    });
  });
});
