import { execFileSync } from "node:child_process";
import { dashboardStatement, dashboardValues } from "./dashboard-statement.ts";
import { existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { runMain } from "./options.ts";

/**
 * Issue 13 point 6, "relationJoins through Pothos selections", measured
 * (docs/performance.md, "Measured: relationJoins"):
 *
 *   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/tenantgraph_bench_h5 npx tsx bench/relation-joins.ts
 *
 * The bench dashboard's selection (20 projects with id, name, slug, the
 * deployment count, and their 5 latest deployments with id, status, branch,
 * commit, date and the creator's e-mail; latestDeployment is the first of
 * them) as the one nested Prisma query @pothos/plugin-prisma would make of
 * it, with `relationLoadStrategy: "join"` (one statement, JSON built by
 * PostgreSQL) and "query" (Prisma's default: one statement per level),
 * against the server's own statement (test/__sql__/Dashboard.sql, the
 * prefetch of deployment.prefetch.ts) sent through pg. Prisma 7.10 still
 * keeps `relationLoadStrategy` behind the `relationJoins` preview flag (the
 * generated client's types and its query compiler), so the script
 * generates a client with the flag of its own into a temporary directory
 * (never into src/generated). One connection as tenantgraph_app, the RLS
 * settings set on the session per tenant (as the server sets them per
 * transaction), 20 tenants in turn; per variant: Node CPU per call
 * (process.cpuUsage around the call alone), statements per call, and
 * PostgreSQL's planning and execution time (EXPLAIN ANALYZE of each
 * statement the call sent, medians).
 */

const url = process.env.DATABASE_URL;
if (!url) throw new Error("DATABASE_URL (the bench database) is required");
const CALLS = Number(process.env.RJ_CALLS ?? 400);

/** A client generated with previewFeatures = ["relationJoins"], outside the repository's src. */
function relationJoinsClient(): string {
  const dir = process.env.RELATION_JOINS_DIR ?? join(tmpdir(), "tenantgraph-relation-joins");
  const entry = join(dir, "client", "client.ts");
  if (existsSync(entry)) return entry;
  mkdirSync(dir, { recursive: true });
  const modules = join(dir, "node_modules");
  if (!existsSync(modules)) symlinkSync(realpathSync(new URL("../node_modules", import.meta.url)), modules);
  const schema = readFileSync(new URL("../prisma/schema.prisma", import.meta.url), "utf8")
    .replace(/generator client \{[\s\S]*?\n\}/, `generator client {\n  provider = "prisma-client"\n  output = "./client"\n  moduleFormat = "esm"\n  previewFeatures = ["relationJoins"]\n}`)
    .replace(/generator pothos \{[\s\S]*?\n\}\n/, "");
  writeFileSync(join(dir, "schema.prisma"), schema);
  execFileSync("npx", ["prisma", "generate", "--schema", join(dir, "schema.prisma")], {
    cwd: dir,
    stdio: "inherit",
    env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: "/dev/null" },
  });
  return entry;
}

const golden = dashboardStatement;
const serverValues = dashboardValues;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Sent {
  text: string;
  values: unknown[];
}

async function main() {
  const { PrismaClient } = (await import(pathToFileURL(relationJoinsClient()).href)) as { PrismaClient: new (o: object) => any };
  const pool = new pg.Pool({ connectionString: url, max: 1, options: "-c role=tenantgraph_app" });
  let recording: Sent[] | null = null;
  const wrapped = new WeakSet<object>();
  pool.on("acquire", (client) => {
    if (wrapped.has(client)) return;
    wrapped.add(client);
    const original = client.query;
    (client as any).query = function (...args: any[]) {
      const first = args[0];
      if (recording) recording.push(typeof first === "string" ? { text: first, values: args[1] ?? [] } : { text: first.text, values: first.values ?? [] });
      return (original as any).apply(this, args);
    };
  });
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });

  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const { rows: pairs } = await admin.query<{ tenant_id: string; user_id: string }>(
    `SELECT DISTINCT ON (m.tenant_id) m.tenant_id, m.user_id FROM memberships m ORDER BY m.tenant_id, m.role LIMIT 20`,
  );
  await admin.end();
  const settle = (p: { tenant_id: string; user_id: string }) =>
    pool.query(`SELECT set_config('app.tenant_id', $1, false), set_config('app.user_id', $2, false), set_config('app.api_key_id', '', false)`, [p.tenant_id, p.user_id]);

  const order = [{ createdAt: "desc" }, { id: "desc" }];
  const prismaDashboard = (tenantId: string, relationLoadStrategy: "join" | "query") =>
    prisma.project.findMany({
      relationLoadStrategy,
      where: { tenantId },
      orderBy: order,
      take: 21,
      select: {
        id: true,
        name: true,
        slug: true,
        createdAt: true,
        _count: { select: { deployments: true } },
        deployments: {
          orderBy: order,
          take: 6,
          select: { id: true, status: true, branch: true, commitSha: true, createdAt: true, createdBy: { select: { email: true } } },
        },
      },
    });
  const variants: Record<string, (p: { tenant_id: string; user_id: string }) => Promise<unknown>> = {
    "Prisma, relationLoadStrategy join": (p) => prismaDashboard(p.tenant_id, "join"),
    "Prisma, relationLoadStrategy query (default)": (p) => prismaDashboard(p.tenant_id, "query"),
    "server statement through pg (prefetch)": (p) => pool.query(golden, serverValues(p.tenant_id, p.user_id)),
  };

  // The same answer: projects in order, their counts, their deployments' ids in order.
  for (const p of pairs.slice(0, 5)) {
    await settle(p);
    const joined = (await variants["Prisma, relationLoadStrategy join"]!(p)) as any[];
    const server = ((await variants["server statement through pg (prefetch)"]!(p)) as pg.QueryResult).rows;
    const shape = (ps: any[], count: (x: any) => number, deps: (x: any) => any[]) => ps.map((x) => [x.id, count(x), deps(x).map((d: any) => d.id)]);
    const a = JSON.stringify(shape(joined, (x) => x._count.deployments, (x) => x.deployments));
    const b = JSON.stringify(shape(server, (x) => x.deploymentCount, (x) => (typeof x.deploymentRows === "string" ? JSON.parse(x.deploymentRows) : x.deploymentRows)));
    if (a !== b) throw new Error(`answers differ for tenant ${p.tenant_id}`);
  }

  console.log(`relation-joins: ${CALLS} calls per variant over ${pairs.length} tenants, one connection, load average ${(await import("node:os")).loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  for (const [name, call] of Object.entries(variants)) {
    for (let i = 0; i < 40; i++) {
      const p = pairs[i % pairs.length]!;
      await settle(p);
      await call(p);
    }
    const cpu: number[] = [];
    const statements: number[] = [];
    const sent = new Map<string, Sent[]>();
    for (let i = 0; i < CALLS; i++) {
      const p = pairs[i % pairs.length]!;
      await settle(p);
      recording = [];
      const before = process.cpuUsage();
      await call(p);
      const used = process.cpuUsage(before);
      cpu.push((used.user + used.system) / 1000);
      statements.push(recording.length);
      if (!sent.has(p.tenant_id)) sent.set(p.tenant_id, recording);
      recording = null;
    }
    const planning: number[] = [];
    const execution: number[] = [];
    for (let round = 0; round < 2; round++) {
      for (const p of pairs) {
        await settle(p);
        let plan = 0;
        let exec = 0;
        for (const s of sent.get(p.tenant_id) ?? []) {
          const { rows } = await pool.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${s.text}`, s.values);
          const out = (rows[0] as { "QUERY PLAN": { "Planning Time": number; "Execution Time": number }[] })["QUERY PLAN"][0]!;
          plan += out["Planning Time"];
          exec += out["Execution Time"];
        }
        if (round > 0) {
          planning.push(plan);
          execution.push(exec);
        }
      }
    }
    const mean = cpu.reduce((a, b) => a + b, 0) / cpu.length;
    console.log(
      `${name}: Node CPU ${median(cpu).toFixed(3)} ms per call (median; mean ${mean.toFixed(3)}), ${median(statements)} statement(s), PostgreSQL planning ${median(planning).toFixed(3)} ms + execution ${median(execution).toFixed(3)} ms (EXPLAIN ANALYZE medians)`,
    );
  }
  await prisma.$disconnect();
  await pool.end();
}

runMain(main);
