import { loadConfig } from "../src/config.ts";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { runMigrations } from "../src/db/migrate.ts";

/** npm run db:migrate: applies pending migrations (embedded PostgreSQL when DATABASE_URL is unset). */
const config = loadConfig();
const embedded = config.databaseUrl
  ? undefined
  : await startEmbeddedPostgres({ dataDir: config.embeddedPgDataDir, port: config.embeddedPgPort });
try {
  const { applied, skipped } = await runMigrations(config.databaseUrl ?? embedded!.url, { log: console.log });
  console.log(`${applied.length} applied, ${skipped.length} already applied`);
} finally {
  await embedded?.stop();
}
