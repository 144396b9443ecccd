import { loadConfig } from "../src/config.ts";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { PlacementAdmin } from "../src/db/placement-admin.ts";

/**
 * npm run db:migrate: applies pending migrations to the main database, then
 * to every tenant placement the directory names (SCHEMA and DATABASE
 * tenants, docs/placement.md). Embedded PostgreSQL when DATABASE_URL is unset.
 */
const config = loadConfig();
const embedded = config.databaseUrl
  ? undefined
  : await startEmbeddedPostgres({ dataDir: config.embeddedPgDataDir, port: config.embeddedPgPort });
try {
  const admin = new PlacementAdmin(config.databaseUrl ?? embedded!.url, config.placementServers);
  const { main, placements } = await admin.migrateAll(console.log);
  console.log(`${main.applied.length} applied, ${main.skipped.length} already applied; ${placements} placement(s) migrated`);
} finally {
  await embedded?.stop();
}
