import { loadConfig } from "../src/config.ts";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { PlacementAdmin } from "../src/db/placement-admin.ts";

/**
 * npm run db:migrate: applies pending migrations to the main database, then
 * to every tenant placement the directory names (SCHEMA and DATABASE
 * tenants, docs/placement.md); a placement that fails does not stop the
 * others: each failure is printed and the exit code is 1. Embedded
 * PostgreSQL when DATABASE_URL is unset.
 */
const config = loadConfig();
const embedded = config.databaseUrl
  ? undefined
  : await startEmbeddedPostgres({ dataDir: config.embeddedPgDataDir, port: config.embeddedPgPort });
try {
  const admin = new PlacementAdmin(config.databaseUrl ?? embedded!.url, config.placementServers);
  const { main, placements, failures } = await admin.migrateAll(console.log);
  console.log(`${main.applied.length} applied, ${main.skipped.length} already applied; ${placements - failures.length} of ${placements} placement(s) migrated`);
  // Every placement was tried; each failure is reported and the run fails.
  for (const f of failures) console.error(`placement ${f.placement} failed: ${f.error}`);
  if (failures.length) process.exitCode = 1;
} finally {
  await embedded?.stop();
}
