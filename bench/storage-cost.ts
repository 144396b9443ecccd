import pg from "pg";
import { createDatabases } from "../src/db/clients.ts";
import { refreshStorage } from "../src/modules/storage/storage.service.ts";
import { benchOptionsOrExit, withDatabase } from "./options.ts";
import { seedBenchDatabase } from "./seed.ts";

/**
 * The cost of the background storage measurement (docs/tenant-config.md) on
 * the bench data (BENCH_TENANTS, default 100 tenants x 20 projects x 50
 * deployments ...): seeds a database of its own (BENCH_DATABASE, default
 * tenantgraph_storage_cost), measures 5 times, prints each duration and the
 * plan's buffers, and drops the database.
 *
 *   DATABASE_URL=... REDIS_URL=... npx tsx bench/storage-cost.ts
 */
const opts = benchOptionsOrExit();
opts.database = process.env.BENCH_DATABASE?.trim() || "tenantgraph_storage_cost";
const fixture = await seedBenchDatabase(opts, (line) => console.log(line));
const url = withDatabase(opts.databaseUrl, opts.database);
const db = createDatabases({ ownerUrl: url });
try {
  const rows = await db.platform.$queryRaw<{ n: number }[]>`SELECT (SELECT count(*) FROM deployments) + (SELECT count(*) FROM projects) + (SELECT count(*) FROM workflows) + (SELECT count(*) FROM audit_log) + (SELECT count(*) FROM memberships)::int AS n`;
  console.log(`seeded tenants ${fixture.tenants.length}, tenant rows ${Number(rows[0]?.n)}`);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await refreshStorage(db.platform, { minAgeMs: 0 });
    times.push(r.measureMs);
    const total = r.tenants.reduce((s, t) => s + t.bytes, 0);
    console.log(`run ${i + 1}: ${r.measureMs.toFixed(1)} ms, ${r.tenants.length} tenants, ${(total / 1024 / 1024).toFixed(1)} MiB measured`);
  }
  times.sort((a, b) => a - b);
  console.log(`median ${times[2]!.toFixed(1)} ms`);
} finally {
  await db.close();
  const admin = new pg.Client({ connectionString: opts.databaseUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${opts.database} WITH (FORCE)`);
  await admin.end();
}
