import { createSecretKey } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { decodeProtectedHeader, jwtVerify } from "jose";
import pg from "pg";

/**
 * The floor of SPEC section 9: the least a Node server can do to answer the
 * dashboard request under the same rules, so the GraphQL server's figures
 * have something to be a ratio of.
 *
 * Same as the server: HS256 JWT verified with jose (key imported once, exp
 * and sub required), the tenant from the `tid` claim through a cached
 * slug -> id map, one transaction per request on a pool that connects as
 * tenantgraph_app, opened with the same set_config statement
 * (app.tenant_id, app.user_id, statement_timeout), so RLS filters every row.
 * Not done: GraphQL parsing/validation, membership and rate-limit checks,
 * audit: that difference is what the ratio measures.
 *
 * The SQL is written by hand: one statement that walks the same indexes and
 * lets PostgreSQL build the JSON in the shape the GraphQL query returns.
 *
 * Env: DATABASE_URL (owner URL of the bench database), PORT, JWT_SECRET,
 * DB_POOL_SIZE (default 20; the server's tier pools: 2 + 8 + 16).
 */

const databaseUrl = process.env.DATABASE_URL;
const secret = process.env.JWT_SECRET;
if (!databaseUrl || !secret) {
  console.error("floor-server: DATABASE_URL and JWT_SECRET are required");
  process.exit(78);
}
const port = Number(process.env.PORT ?? 4200);
const poolSize = Number(process.env.DB_POOL_SIZE ?? 20);

const key = createSecretKey(Buffer.from(secret, "utf8"));
const appPool = new pg.Pool({ connectionString: databaseUrl, max: poolSize, options: "-c role=tenantgraph_app" });
const platformPool = new pg.Pool({ connectionString: databaseUrl, max: 2, options: "-c role=tenantgraph_platform" });

/** slug -> { id, plan timeout }, subject -> user id: loaded once, refreshed on a miss. */
const tenants = new Map<string, { id: string; timeoutMs: number }>();
const users = new Map<string, string>();
const TIMEOUTS: Record<string, number> = { FREE: 5000, PRO: 30000, ENTERPRISE: 0 };

async function loadDirectory() {
  const [t, u] = await Promise.all([
    platformPool.query<{ id: string; slug: string; plan: string }>("SELECT id, slug, plan FROM tenants"),
    platformPool.query<{ id: string; auth_subject: string }>("SELECT id, auth_subject FROM users"),
  ]);
  for (const r of t.rows) tenants.set(r.slug, { id: r.id, timeoutMs: TIMEOUTS[r.plan] ?? 0 });
  for (const r of u.rows) users.set(r.auth_subject, r.id);
}

const DASHBOARD_SQL = `
SELECT json_build_object('data', json_build_object('projects', json_build_object('edges',
         COALESCE(json_agg(e.edge ORDER BY e.created_at DESC, e.id DESC), '[]'::json))))::text AS body
  FROM (
    SELECT p.created_at, p.id, json_build_object('node', json_build_object(
             'id', encode(convert_to('Project:' || p.id, 'UTF8'), 'base64'),
             'name', p.name,
             'slug', p.slug,
             'deploymentCount', (SELECT count(*) FROM deployments d WHERE d.tenant_id = p.tenant_id AND d.project_id = p.id),
             'latestDeployment', (
               SELECT json_build_object(
                        'id', encode(convert_to('Deployment:' || d.id, 'UTF8'), 'base64'),
                        'status', d.status,
                        'createdAt', to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
                 FROM deployments d
                WHERE d.tenant_id = p.tenant_id AND d.project_id = p.id
                ORDER BY d.created_at DESC, d.id DESC LIMIT 1),
             'deployments', json_build_object('edges', (
               SELECT COALESCE(json_agg(json_build_object('node', json_build_object(
                        'id', encode(convert_to('Deployment:' || x.id, 'UTF8'), 'base64'),
                        'status', x.status,
                        'branch', x.branch,
                        'commitSha', x.commit_sha,
                        'createdAt', to_char(x.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                        'createdBy', CASE WHEN u.id IS NULL THEN NULL ELSE json_build_object('email', u.email) END))
                        ORDER BY x.created_at DESC, x.id DESC), '[]'::json)
                 FROM (SELECT d.id, d.status, d.branch, d.commit_sha, d.created_at, d.created_by_id
                         FROM deployments d
                        WHERE d.tenant_id = p.tenant_id AND d.project_id = p.id
                        ORDER BY d.created_at DESC, d.id DESC LIMIT 5) x
                 LEFT JOIN users u ON u.id = x.created_by_id))
           )) AS edge
      FROM projects p
     WHERE p.tenant_id = $1
     ORDER BY p.created_at DESC, p.id DESC
     LIMIT 20
  ) e`;

function send(res: ServerResponse, status: number, body: string) {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

const error = (code: string, message: string) => JSON.stringify({ errors: [{ message, extensions: { code } }] });

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function dashboard(req: IncomingMessage, res: ServerResponse) {
  // Parsed like any GraphQL body would be, though the floor answers one query.
  JSON.parse(await readBody(req));
  const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "");
  if (!match) return send(res, 401, error("UNAUTHENTICATED", "Authentication required"));
  let sub: string;
  let tid: unknown;
  try {
    if (decodeProtectedHeader(match[1]!).alg !== "HS256") throw new Error("alg");
    const { payload } = await jwtVerify(match[1]!, key, { algorithms: ["HS256"], requiredClaims: ["exp", "sub"], clockTolerance: 5 });
    sub = payload.sub!;
    tid = payload.tid;
  } catch {
    return send(res, 401, error("UNAUTHENTICATED", "Invalid or expired token"));
  }
  if (typeof tid !== "string") return send(res, 200, error("TENANT_REQUIRED", "A tenant is required"));
  if (!tenants.has(tid) || !users.has(sub)) await loadDirectory();
  const tenant = tenants.get(tid);
  const userId = users.get(sub);
  if (!tenant || !userId) return send(res, 200, error("TENANT_ACCESS_DENIED", "Unknown tenant or not a member"));

  const client = await appPool.connect();
  try {
    await client.query("BEGIN");
    await client.query(
      `SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true),
              set_config('statement_timeout', $3, true)`,
      [tenant.id, userId, String(tenant.timeoutMs)],
    );
    const { rows } = await client.query<{ body: string }>({ name: "dashboard", text: DASHBOARD_SQL, values: [tenant.id] });
    await client.query("COMMIT");
    client.release();
    send(res, 200, rows[0]!.body);
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    client.release();
    throw err;
  }
}

const server = createServer((req, res) => {
  if (req.url === "/healthz" || req.url === "/readyz") return send(res, 200, '{"status":"ready"}');
  if (req.method !== "POST" || !req.url?.startsWith("/graphql")) return send(res, 404, error("NOT_FOUND", "Not found"));
  dashboard(req, res).catch((err: unknown) => {
    console.error(err);
    if (!res.headersSent) send(res, 500, error("INTERNAL_SERVER_ERROR", "Unexpected error"));
  });
});
server.keepAliveTimeout = 65_000;

await loadDirectory();
server.listen(port, () => console.log(`floor listening on ${port}`));
const stop = async () => {
  server.closeAllConnections();
  server.close();
  await Promise.allSettled([appPool.end(), platformPool.end()]);
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
