/**
 * The policy enforcer's cost per request: the dashboard query executed
 * in-process N times against the schema with the enforcer and against the
 * same schema built without it (`disablePolicyEnforcer`), interleaved in
 * rounds so drift hits both alike. Needs a PostgreSQL server:
 *
 *   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres npx tsx scripts/enforcer-overhead.ts [N]
 *
 * It creates a scratch database, migrates and seeds it, and drops it after.
 */
import { CursorCodec } from "../src/infra/cursor.ts";
import { RateLimiter } from "../src/infra/rate-limit.ts";
import { ApiKeyUse } from "../src/tenancy/last-used.ts";
import { randomBytes } from "node:crypto";
import { execute, parse, type GraphQLSchema } from "graphql";
import pg from "pg";
import { builder } from "../src/graphql/builder.ts";
import { createDatabases } from "../src/db/clients.ts";
import { runMigrations } from "../src/db/migrate.ts";
import { seedDemo } from "../src/db/seed.ts";
import { MemoryStore } from "../src/infra/memory-store.ts";
import { enforce } from "../src/policy/enforcer.ts";
import { schema } from "../src/schema.ts";
import { buildContext, type ContextDeps } from "../src/tenancy/context.ts";
import { createTokenVerifier } from "../src/tenancy/credentials.ts";
import { Directory } from "../src/tenancy/directory.ts";
import { signDevToken } from "../src/tenancy/tokens.ts";

const N = Number(process.argv[2] ?? 500);
const server = process.env.DATABASE_URL;
if (!server) throw new Error("set DATABASE_URL to a PostgreSQL server");
const DASHBOARD = parse(`{ projects(first: 20) { edges { node { name deploymentCount latestDeployment { status }
  deployments(first: 5) { edges { node { status createdAt createdBy { email } } } } } } } }`);

const name = `tg_overhead_${randomBytes(4).toString("hex")}`;
const admin = new pg.Client({ connectionString: server });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const url = new URL(server);
url.pathname = `/${name}`;
try {
  await runMigrations(url.toString());
  const dbs = createDatabases({ ownerUrl: url.toString(), pools: { FREE: 5, PRO: 5, ENTERPRISE: 5 } });
  await seedDemo(dbs.platform);
  const store = new MemoryStore();
  const secret = "overhead-secret-0123456789abcdef0123456789";
  const deps: ContextDeps = {
    app: dbs.app,
    platform: dbs.platform,
    store,
    directory: new Directory(dbs.platform, store),
    verifyToken: createTokenVerifier({ jwtSecret: secret, jwtIssuer: undefined, jwtAudience: undefined, jwksUrl: undefined }),
    cursors: new CursorCodec(secret),
    rateLimiter: new RateLimiter(store),
    apiKeyUse: new ApiKeyUse(dbs.platform),
  };
  await dbs.platform.tenantLimitOverride.create({
    data: { tenantId: (await dbs.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id, resource: "API_REQUESTS_PER_MINUTE", limit: null },
  });
  const token = await signDevToken({ secret, sub: "viewer@acme.test", tenant: "acme", ttl: "1h" });
  const without = builder.toSchema({ sortSchema: false, disablePolicyEnforcer: true });

  async function once(s: GraphQLSchema) {
    const request = new Request("http://localhost/graphql", { headers: { authorization: `Bearer ${token}` } });
    const ctx = await buildContext(deps, request, { requestId: "bench" }, { ip: null });
    const result = await execute({ schema: s, document: DASHBOARD, contextValue: ctx });
    await ctx.finish();
    if (result.errors) throw result.errors[0];
  }
  async function timed(s: GraphQLSchema, n: number) {
    const start = performance.now();
    for (let i = 0; i < n; i++) await once(s);
    return performance.now() - start;
  }
  for (let i = 0; i < 50; i++) await Promise.all([once(schema), once(without)]); // warm-up
  const rounds = 10;
  let withMs = 0;
  let withoutMs = 0;
  for (let r = 0; r < rounds; r++) {
    withoutMs += await timed(without, N / rounds);
    withMs += await timed(schema, N / rounds);
  }
  console.log(`dashboard query x${N} in-process (viewer@acme, PRO, 4 projects):`);
  console.log(`  with enforcer:    ${(withMs / N).toFixed(3)} ms/request`);
  console.log(`  without enforcer: ${(withoutMs / N).toFixed(3)} ms/request`);
  console.log(`  difference:       ${((withMs - withoutMs) / N).toFixed(3)} ms/request (noise-dominated on a busy machine)`);
  // The wrapper alone: the dashboard query passes one enforced field (projects).
  const ctx = await buildContext(deps, new Request("http://localhost/", { headers: { authorization: `Bearer ${token}` } }), { requestId: "b" }, { ip: null });
  const plain = (_p: unknown, _a: unknown, c: unknown) => c;
  const wrapped = enforce(plain as never, { crossTenant: false, auth: "VIEWER" }, "Query.projects");
  const M = 1_000_000;
  let t0 = performance.now();
  for (let i = 0; i < M; i++) plain(null, null, ctx);
  const base = performance.now() - t0;
  t0 = performance.now();
  for (let i = 0; i < M; i++) wrapped(null, {}, ctx, null as never);
  const enforced = performance.now() - t0;
  console.log(`  @auth wrapper alone: ${(((enforced - base) / M) * 1e6).toFixed(0)} ns per enforced field call`);
  await dbs.close();
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
