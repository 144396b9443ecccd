import { Redis } from "ioredis";
import pg from "pg";
import { redisKeyPrefix } from "../src/config/redis-key-prefix.ts";
import { runMigrations } from "../src/db/migrate.ts";
import type { BenchOptions } from "./options.ts";
import { withDatabase } from "./options.ts";

/**
 * The bench database: dropped and recreated every run, migrated with the
 * server's own runner, then filled set-wise (INSERT ... SELECT over
 * generate_series: one statement per table, the deployments in chunks of
 * tenants with their indexes built after: a few seconds for 100,000
 * deployments, under a minute for 1M) rather than row by row through the API.
 *
 * Data (SPEC section 9): N tenants x 20 projects x 50 deployments, 10
 * workflows and 5 members per tenant (OWNER, ADMIN, 2 DEVELOPER, VIEWER;
 * deployments created by the members in turn), a platform admin. Every tenant
 * but the noisy one gets API_REQUESTS_PER_MINUTE and DEPLOYMENTS_PER_HOUR
 * overrides far above what the load can reach, so the bench measures
 * throughput and not the limiter; the noisy tenant keeps a real limit.
 */

export const MEMBER_ROLES = ["OWNER", "ADMIN", "DEVELOPER", "DEVELOPER", "VIEWER"] as const;
export type MemberRole = (typeof MEMBER_ROLES)[number];

export interface BenchTenant {
  id: string;
  slug: string;
  plan: string;
  members: { email: string; role: MemberRole }[];
  /** Project ids, newest first (the dashboard's order). */
  projectIds: string[];
}

export interface Fixture {
  url: string;
  tenants: BenchTenant[];
  /** The tenant of the noisy-neighbour scenario (a real rate limit). */
  noisy: BenchTenant;
  adminSubject: string;
  seedMs: number;
  counts: Record<string, number>;
}

export const ADMIN_SUBJECT = "ops@bench.test";
const UNLIMITED = 1_000_000_000;

/** The slugs of the neighbour scenarios' tenants (bench/neighbours.ts), left out of the regular ones. */
export const NEIGHBOUR_PREFIX = "bench-x-";

export const tenantSlug = (i: number) => `bench-${String(i).padStart(3, "0")}`;

async function recreateDatabase(ownerUrl: string, database: string) {
  if (!/^[a-z_][a-z0-9_]*$/.test(database)) throw new Error(`BENCH_DATABASE: not a plain identifier: ${database}`);
  const admin = new pg.Client({ connectionString: ownerUrl });
  await admin.connect();
  try {
    if (new URL(ownerUrl).pathname.slice(1) === database) {
      throw new Error(`DATABASE_URL already points at ${database}; point it at another database of the server (e.g. postgres)`);
    }
    await dropPlacedDatabases(ownerUrl, withDatabase(ownerUrl, database));
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${database}`);
  } finally {
    await admin.end();
  }
}

export async function seedBenchDatabase(opts: BenchOptions, log: (line: string) => void): Promise<Fixture> {
  const started = Date.now();
  await recreateDatabase(opts.databaseUrl, opts.database);
  const url = withDatabase(opts.databaseUrl, opts.database);
  await runMigrations(url);
  log(`database ${opts.database} created and migrated in ${Date.now() - started} ms`);

  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const noisySlug = tenantSlug(opts.tenants);
  try {
    await db.query("BEGIN");
    // The platform role: the path that may write every tenant's rows (and
    // the one a non-superuser migrator can use, as FORCE RLS binds owners).
    await db.query("SET LOCAL ROLE tenantgraph_platform");
    await db.query(
      // Zero-padded to 3 digits at least (bench-001 ... bench-100, bench-1000 ...): never truncated.
      `INSERT INTO tenants (slug, name, plan, created_at)
       SELECT $1 || lpad(i::text, greatest(3, length(i::text)), '0'), 'Bench tenant ' || i,
              (CASE WHEN i = $2 THEN 'FREE' ELSE (ARRAY['FREE','PRO','ENTERPRISE'])[1 + i % 3] END)::"Plan",
              now() - interval '400 days' + i * interval '1 minute'
         FROM generate_series(1, $2::int) AS i`,
      ["bench-", opts.tenants],
    );
    // The tenants' rows from here on are written as a replica: no foreign-key
    // check or trigger per row or statement (the statement triggers' work
    // grows with the tenants a transaction touched: minutes at 10,000). The
    // triggers' one effect the bench reads, the analytics counters, is
    // recounted at the end (the tenants' counters and cache-generation rows
    // were made by the tenants INSERT above, as usual).
    await db.query("RESET ROLE; SET LOCAL session_replication_role = replica; SET LOCAL ROLE tenantgraph_platform");
    await db.query(
      `INSERT INTO users (email, name, auth_subject, is_platform_admin)
       VALUES ($1, 'Bench operator', $1, true)`,
      [ADMIN_SUBJECT],
    );
    const roles = MEMBER_ROLES.map((r, k) => `(${k + 1}, '${r}')`).join(", ");
    await db.query(
      `CREATE TEMP TABLE bench_members ON COMMIT DROP AS
       SELECT t.id AS tenant_id, r.k, r.role::"Role" AS role,
              lower(r.role) || '-' || r.k || '@' || t.slug || '.test' AS email
         FROM tenants t CROSS JOIN (VALUES ${roles}) AS r(k, role)`,
    );
    await db.query(
      `INSERT INTO users (email, name, auth_subject)
       SELECT email, 'Member ' || k, email FROM bench_members`,
    );
    await db.query(
      `INSERT INTO memberships (tenant_id, user_id, role, created_at)
       SELECT m.tenant_id, u.id, m.role, now() - interval '300 days' + m.k * interval '1 minute'
         FROM bench_members m JOIN users u ON u.email = m.email`,
    );
    await db.query(
      `INSERT INTO projects (tenant_id, name, slug, description, created_at, updated_at)
       SELECT t.id, 'Project ' || p, 'project-' || p, 'Bench project ' || p || ' of ' || t.slug,
              now() - interval '90 days' + p * interval '1 hour',
              now() - interval '90 days' + p * interval '1 hour'
         FROM tenants t CROSS JOIN generate_series(1, $1::int) AS p`,
      [opts.projectsPerTenant],
    );
    await db.query(
      `CREATE TEMP TABLE bench_creators ON COMMIT DROP AS
       SELECT m.tenant_id, array_agg(u.id ORDER BY m.k) AS ids
         FROM bench_members m JOIN users u ON u.email = m.email GROUP BY m.tenant_id`,
    );
    await seedDeployments(db, opts);
    await db.query(
      `INSERT INTO workflows (tenant_id, project_id, name, status, config, created_at, updated_at)
       SELECT p.tenant_id, p.id, 'Workflow of ' || p.slug,
              (ARRAY['ACTIVE','PAUSED','ARCHIVED'])[1 + n % 3]::"WorkflowStatus",
              jsonb_build_object('steps', jsonb_build_array('install', 'test', 'deploy')),
              p.created_at, p.created_at
         FROM (SELECT p.*, row_number() OVER (PARTITION BY p.tenant_id ORDER BY p.created_at) AS n FROM projects p) p
        WHERE p.n <= $1`,
      [opts.workflowsPerTenant],
    );
    await db.query(
      `INSERT INTO tenant_limit_overrides (tenant_id, resource, "limit")
       SELECT t.id, r::"QuotaResource", $2::int
         FROM tenants t CROSS JOIN unnest(ARRAY['API_REQUESTS_PER_MINUTE', 'DEPLOYMENTS_PER_HOUR', 'WORKFLOWS_PER_HOUR', 'SUBSCRIPTIONS']) AS r
        WHERE t.slug <> $1
       UNION ALL
       SELECT t.id, 'API_REQUESTS_PER_MINUTE', $3::int FROM tenants t WHERE t.slug = $1`,
      [noisySlug, UNLIMITED, opts.noisyLimitPerMinute],
    );
    // The counters, recounted set-wise: one pass per table (per tenant, with
    // app_tenant_stats_recount, takes minutes over 10M fresh rows), as the owner (no server role may write them).
    await db.query("RESET ROLE");
    await db.query(
      `UPDATE tenant_stats s SET members = m.n, projects = p.n, workflows = w.n, deployments = d.total, deployments_queued = d.q,
              deployments_building = d.b, deployments_ready = d.r, deployments_error = d.e, deployments_canceled = d.c
         FROM (SELECT tenant_id, count(*) AS n FROM memberships GROUP BY tenant_id) m
         JOIN (SELECT tenant_id, count(*) AS n FROM projects GROUP BY tenant_id) p USING (tenant_id)
         JOIN (SELECT tenant_id, count(*) AS n FROM workflows GROUP BY tenant_id) w USING (tenant_id)
         JOIN (SELECT tenant_id, count(*) AS total, count(*) FILTER (WHERE status = 'QUEUED') AS q,
                      count(*) FILTER (WHERE status = 'BUILDING') AS b, count(*) FILTER (WHERE status = 'READY') AS r,
                      count(*) FILTER (WHERE status = 'ERROR') AS e, count(*) FILTER (WHERE status = 'CANCELED') AS c
                 FROM deployments GROUP BY tenant_id) d USING (tenant_id)
        WHERE s.tenant_id = m.tenant_id`,
    );
    await db.query("COMMIT");
    await db.query("ANALYZE");

    const tenants = await loadTenants(db);
    const { rows } = await db.query<{ t: string; n: string }>(
      `SELECT 'tenants' t, count(*) n FROM tenants UNION ALL SELECT 'users', count(*) FROM users
       UNION ALL SELECT 'memberships', count(*) FROM memberships UNION ALL SELECT 'projects', count(*) FROM projects
       UNION ALL SELECT 'deployments', count(*) FROM deployments UNION ALL SELECT 'workflows', count(*) FROM workflows`,
    );
    const counts = Object.fromEntries(rows.map((r) => [r.t, Number(r.n)]));
    const seedMs = Date.now() - started;
    log(`seeded ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")} in ${seedMs} ms`);
    return { url, tenants, noisy: tenants.find((t) => t.slug === noisySlug)!, adminSubject: ADMIN_SUBJECT, seedMs, counts };
  } catch (err) {
    await db.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    await db.end();
  }
}

/** Tenants per deployments statement: bounds each statement's transition table (captured even with the triggers off). */
const DEPLOYMENT_CHUNK_TENANTS = 500;

/**
 * The deployments, the bulk of the data (10,000 tenants: 10M rows), as fast
 * as set-based SQL goes: the secondary indexes dropped first and built
 * after (one sort each instead of 10M index insertions each), the rows
 * written (as a replica, see above: queued_at written as the status trigger
 * would) in statements of DEPLOYMENT_CHUNK_TENANTS tenants. Needs a
 * superuser DATABASE_URL (session_replication_role), as the bench's CREATE
 * DATABASE does.
 */
async function seedDeployments(db: pg.Client, opts: BenchOptions) {
  await db.query("RESET ROLE");
  const { rows: indexes } = await db.query<{ name: string; def: string }>(
    `SELECT i.indexname AS name, i.indexdef AS def FROM pg_indexes i
      WHERE i.schemaname = current_schema() AND i.tablename = 'deployments'
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)`,
  );
  for (const i of indexes) await db.query(`DROP INDEX "${i.name}"`);
  await db.query(`CREATE TEMP TABLE bench_tenant_no ON COMMIT DROP AS SELECT id, row_number() OVER (ORDER BY id) AS n FROM tenants`);
  for (let from = 1; from <= opts.tenants; from += DEPLOYMENT_CHUNK_TENANTS) {
    await db.query(
      `INSERT INTO deployments (tenant_id, project_id, status, url, commit_sha, branch, created_by_id, created_at, updated_at, queued_at)
       SELECT p.tenant_id, p.id, x.status, x.url, x.sha, x.branch, x.creator, x.at, x.at, CASE WHEN x.status = 'QUEUED' THEN x.at END
         FROM projects p
         JOIN bench_tenant_no tn ON tn.id = p.tenant_id AND tn.n >= $2 AND tn.n < $3
         JOIN bench_creators c ON c.tenant_id = p.tenant_id
        CROSS JOIN generate_series(1, $1::int) AS d
        CROSS JOIN LATERAL (SELECT
              (ARRAY['READY','READY','BUILDING','ERROR','QUEUED','CANCELED'])[1 + d % 6]::"DeploymentStatus" AS status,
              'https://' || p.slug || '-' || d || '.example.dev' AS url,
              substr(md5(p.id::text || d), 1, 12) AS sha,
              CASE WHEN d % 3 = 0 THEN 'main' ELSE 'feature-' || d END AS branch,
              c.ids[1 + d % array_length(c.ids, 1)] AS creator,
              p.created_at + d * interval '7 minutes' AS at) x
        ORDER BY p.tenant_id`,
      [opts.deploymentsPerProject, from, from + DEPLOYMENT_CHUNK_TENANTS],
    );
  }
  await db.query("SET LOCAL maintenance_work_mem = '256MB'");
  for (const i of indexes) await db.query(i.def);
  await db.query("SET LOCAL ROLE tenantgraph_platform");
}

/** The fixture of a database seeded earlier (bench/profile.ts reuses it), or undefined. */
export async function loadFixture(opts: BenchOptions): Promise<Fixture | undefined> {
  const url = withDatabase(opts.databaseUrl, opts.database);
  const db = new pg.Client({ connectionString: url });
  try {
    await db.connect();
  } catch {
    return undefined;
  }
  try {
    const tenants = await loadTenants(db).catch(() => []);
    const noisy = tenants.find((t) => t.slug === tenantSlug(opts.tenants));
    if (tenants.length !== opts.tenants || !noisy) return undefined;
    return { url, tenants, noisy, adminSubject: ADMIN_SUBJECT, seedMs: 0, counts: { tenants: tenants.length } };
  } finally {
    await db.end();
  }
}

async function loadTenants(db: pg.Client): Promise<BenchTenant[]> {
  const { rows } = await db.query<{
    id: string;
    slug: string;
    plan: string;
    members: { email: string; role: MemberRole }[];
    projects: string[];
  }>(
    `SELECT t.id, t.slug, t.plan,
            (SELECT json_agg(json_build_object('email', u.email, 'role', m.role) ORDER BY m.created_at)
               FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = t.id) AS members,
            (SELECT array_agg(p.id::text ORDER BY p.created_at DESC, p.id DESC)
               FROM projects p WHERE p.tenant_id = t.id) AS projects
       FROM tenants t WHERE t.slug NOT LIKE $1 || '%' ORDER BY t.slug`,
    [NEIGHBOUR_PREFIX],
  );
  return rows.map((r) => ({ id: r.id, slug: r.slug, plan: r.plan, members: r.members, projectIds: r.projects }));
}

/**
 * Directory entries cached by a previous run point at ids that no longer
 * exist. Under REDIS_KEY_PREFIX (the server's, `prefix`): only that
 * deployment's entries, never another's on the same Redis.
 */
export async function clearStaleDirectoryCache(redisUrl: string, prefix = redisKeyPrefix(process.env)) {
  const redis = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 2 });
  let deleted = 0;
  try {
    for (const pattern of ["tslug:bench-*", "u:sub:*@bench-*.test", `u:sub:${ADMIN_SUBJECT}`].map((p) => prefix + p)) {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        if (keys.length) deleted += await redis.del(...keys);
      } while (cursor !== "0");
    }
  } finally {
    redis.disconnect();
  }
  return deleted;
}

/**
 * The databases of the DATABASE placements a previous run made in the bench
 * database (their names come from tenant ids, new at every seed): dropped
 * before the bench database itself, or they would pile up on the server.
 */
export async function dropPlacedDatabases(ownerUrl: string, benchUrl: string): Promise<string[]> {
  const bench = new pg.Client({ connectionString: benchUrl });
  const names: string[] = [];
  try {
    await bench.connect();
    const { rows } = await bench.query<{ name: string }>(
      `SELECT placement_name AS name FROM tenants WHERE placement = 'DATABASE' AND placement_name ~ '^tg_tenant_[0-9a-f]{32}$'`,
    );
    names.push(...rows.map((r) => r.name));
  } catch {
    return []; // no bench database yet (or one from before placements)
  } finally {
    await bench.end().catch(() => {});
  }
  const admin = new pg.Client({ connectionString: ownerUrl });
  await admin.connect();
  try {
    for (const name of names) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
  return names;
}
