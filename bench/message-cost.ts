import { readFileSync } from "node:fs";
import { dashboardStatement, dashboardValues } from "./dashboard-statement.ts";
import { loadavg } from "node:os";
import pg from "pg";
import { RequestConnection } from "../src/db/request-slots.ts";
import { commitWith } from "../src/tenancy/request-commit.ts";
import { factsSql } from "../src/tenancy/request-facts.ts";
import { openSql, type TransactionSettings } from "../src/tenancy/transaction-settings.ts";
import { runMain } from "./options.ts";

/**
 * What one PostgreSQL message less saves, on both ends (docs/performance.md,
 * "Fourth round: PostgreSQL messages per request"):
 *
 *   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/tenantgraph_bench_h5 npx tsx bench/message-cost.ts
 *
 * One connection as tenantgraph_app, the requests of 20 tenants in turn, the
 * server's own statements (transaction-settings.ts, request-facts.ts, the
 * dashboard's statement of test/__sql__/Dashboard.sql), each pair of
 * variants alternated in blocks so both live through the same load:
 *
 *  - a response-cache HIT: BEGIN + settings + facts, then COMMIT (before),
 *    against the same with COMMIT in the first message (after);
 *  - the dashboard: the data statement, then COMMIT (before), against the
 *    statement with its COMMIT under one Sync (after, request-commit.ts `commitWith`).
 *
 * Reports Node's CPU per request (process.cpuUsage) and the PostgreSQL
 * backend's (utime + stime of its process in /proc, 10 ms ticks, over
 * thousands of requests), and wall time per request. MESSAGE_COST_ONLY=hit
 * or =dashboard runs one pair.
 */

const url = process.env.DATABASE_URL;
if (!url) throw new Error("DATABASE_URL (the bench database) is required");
const N = Number(process.env.MESSAGE_COST_REQUESTS ?? 3000);
const BLOCK = 250;

const golden = dashboardStatement;
const serverValues = dashboardValues;

const ticks = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime, after the state field
};

async function main() {
  const client = new pg.Client({ connectionString: url, options: "-c role=tenantgraph_app" });
  await client.connect();
  const backend = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const { rows: pairs } = await admin.query<{ tenant_id: string; user_id: string }>(
    `SELECT DISTINCT ON (m.tenant_id) m.tenant_id, m.user_id FROM memberships m ORDER BY m.tenant_id, m.role LIMIT 20`,
  );
  await admin.end();
  const settings = (p: { tenant_id: string; user_id: string }): TransactionSettings => ({
    tenantId: p.tenant_id,
    userId: p.user_id,
    statementTimeoutMs: 30_000,
    mode: "request",
    authorization: { apiKeyHash: null, cache: true },
  });
  const opening = (p: { tenant_id: string; user_id: string }) => `${openSql(settings(p))}; ${factsSql(settings(p))}`;
  const connection = new RequestConnection(client as unknown as pg.PoolClient);
  // commitWith gives the connection back when done: here it stays.
  (client as unknown as { release: () => void }).release = () => {};

  const variants: [string, Record<"before" | "after", (p: { tenant_id: string; user_id: string }) => Promise<unknown>>][] = [
    [
      "HIT: BEGIN + settings + facts, COMMIT",
      {
        before: async (p) => {
          await client.query(opening(p));
          await client.query("COMMIT");
        },
        after: (p) => client.query(`${opening(p)}; COMMIT`),
      },
    ],
    [
      "dashboard: data statement, COMMIT",
      {
        before: async (p) => {
          await client.query(opening(p));
          // Through the request connection, as TenantDb.queryRaw and endSession send them.
          await connection.query(golden, serverValues(p.tenant_id, p.user_id));
          await connection.query("COMMIT");
        },
        after: async (p) => {
          await client.query(opening(p));
          await commitWith({ connection, idle: Promise.resolve() }, golden, serverValues(p.tenant_id, p.user_id));
        },
      },
    ],
  ];
  console.log(`message-cost: ${N} requests per variant over ${pairs.length} tenants, one connection; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const only = process.env.MESSAGE_COST_ONLY;
  for (const [name, pair] of variants) {
    if (only && !name.toLowerCase().startsWith(only)) continue;
    const sums = { before: { node: 0, pg: 0, wall: 0, n: 0 }, after: { node: 0, pg: 0, wall: 0, n: 0 } };
    for (let i = 0; i < 100; i++) for (const v of ["before", "after"] as const) await pair[v](pairs[i % pairs.length]!);
    for (let done = 0; done < N; done += BLOCK) {
      for (const v of ["before", "after"] as const) {
        const cpu = process.cpuUsage();
        const pg0 = ticks(backend);
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < BLOCK; i++) await pair[v](pairs[(done + i) % pairs.length]!);
        const used = process.cpuUsage(cpu);
        sums[v].wall += Number(process.hrtime.bigint() - t0) / 1e6;
        sums[v].node += (used.user + used.system) / 1000;
        sums[v].pg += (ticks(backend) - pg0) * 10;
        sums[v].n += BLOCK;
      }
    }
    for (const v of ["before", "after"] as const) {
      const s = sums[v];
      console.log(`${name} — ${v}: Node CPU ${(s.node / s.n).toFixed(3)} ms, PostgreSQL backend CPU ${(s.pg / s.n).toFixed(3)} ms, wall ${(s.wall / s.n).toFixed(3)} ms per request`);
    }
    const d = (k: "node" | "pg" | "wall") => sums.after[k] / sums.after.n - sums.before[k] / sums.before.n;
    console.log(`${name} — saved per request: Node ${(-d("node")).toFixed(3)} ms, PostgreSQL ${(-d("pg")).toFixed(3)} ms, wall ${(-d("wall")).toFixed(3)} ms`);
  }
  await client.end();
}

runMain(main);
