import { loadConfig } from "../src/config.ts";
import { createDatabases } from "../src/db/clients.ts";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { runMigrations } from "../src/db/migrate.ts";
import { ensurePlatformAdmins, seedDemo } from "../src/db/seed.ts";

/** npm run db:seed: the demo tenants; idempotent (a second run adds nothing). */
const config = loadConfig();
const embedded = config.databaseUrl
  ? undefined
  : await startEmbeddedPostgres({ dataDir: config.embeddedPgDataDir, port: config.embeddedPgPort });
const url = config.databaseUrl ?? embedded!.url;
await runMigrations(url);
const db = createDatabases({ ownerUrl: url, platformUrl: config.platformDatabaseUrl, pools: { FREE: 1, PRO: 1, ENTERPRISE: 1, platform: 2, live: 1 } });
try {
  const { created } = await seedDemo(db.platform);
  await ensurePlatformAdmins(db.platform, config.platformAdminSubjects);
  console.log(created ? "seeded demo tenants acme, globex, wayne" : "demo tenants already present: nothing to do");
} finally {
  await db.close();
  await embedded?.stop();
}
