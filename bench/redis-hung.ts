import { spawn, type ChildProcess } from "node:child_process";
import pg from "pg";
import { demoEmail } from "../src/db/seed.ts";
import { signDevToken } from "../src/tenancy/tokens.ts";
import { withDatabase } from "./options.ts";
import { spawnChild, waitReady, type Child } from "./processes.ts";

/**
 * How long a request waits when Redis hangs (review F3): it accepts
 * connections and answers nothing (a redis-server of the script's own,
 * stopped with SIGSTOP). Elapsed time is the only observable of the bound,
 * so it is measured here, never asserted by a test
 * (test/integration/redis-hung-budget.test.ts asserts the degraded answers).
 *
 *   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
 *     npx tsx bench/redis-hung.ts "base=/work/wt-faults-base" "budget=/work/wt-faults"
 *
 * Each variant is a checkout whose src/server.ts runs through tsx, on
 * BENCH_PORT+i (default 4660), over one database of the script's
 * (tg_bench_hung, made anew, the demo tenants seeded) and one Redis on
 * HUNG_REDIS_PORT (default 6391), each variant under a key prefix of its
 * own. A round, per kind of request and per variant (alternating): Redis
 * healthy, the request sent twice (the directory's entries and the cached
 * answer in place); Redis stopped; the request timed; Redis continued and
 * 2.5 s left for the store's suspension and the directory's back-off to end,
 * so every timed request meets a hang afresh (the worst case). Then, in one
 * hang, the three kinds one after another (what a burst meets). Prints each
 * figure and the medians (ms).
 */

const log = (line: string) => process.stdout.write(`[hung] ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};

const SECRET = "bench-hung-secret-0123456789abcdef0123456789abcdef";
const KINDS = {
  query: { query: `{ tenant { slug } }` },
  cached: { query: `{ projects(first: 20) { totalCount edges { node { name } } } }` },
  mutation: { query: `mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }` },
} as const;
type Kind = keyof typeof KINDS;

async function main() {
  const variants = process.argv.slice(2).map((arg) => {
    const [label, dir] = arg.split("=") as [string, string];
    return { label, dir };
  });
  if (!variants.length) throw new Error('usage: bench/redis-hung.ts "label=/checkout" ...');
  const adminUrl = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
  const basePort = Number(process.env.BENCH_PORT ?? 4660);
  const redisPort = Number(process.env.HUNG_REDIS_PORT ?? 6391);
  const rounds = Number(process.env.HUNG_ROUNDS ?? 5);

  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query("DROP DATABASE IF EXISTS tg_bench_hung WITH (FORCE)");
  await admin.query("CREATE DATABASE tg_bench_hung");
  const url = withDatabase(adminUrl, "tg_bench_hung");

  const redis: ChildProcess = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  await sleep(500);
  const servers: Child[] = [];
  try {
    for (const [i, v] of variants.entries()) {
      const child = spawnChild(v.label, ["--import", "tsx", "src/server.ts"], v.dir, basePort + i, {
        DATABASE_URL: url,
        REDIS_URL: `redis://127.0.0.1:${redisPort}/0`,
        REDIS_KEY_PREFIX: `hung${i}:`,
        MIGRATE_ON_START: i === 0 ? "true" : "false",
        SEED_ON_START: i === 0 ? "true" : "false",
        JWT_SECRET: SECRET,
        LOG_LEVEL: "error",
        NODE_ENV: "development",
      });
      servers.push(child);
      await waitReady(child, 120_000);
    }
    const token = await signDevToken({ secret: SECRET, sub: demoEmail("DEVELOPER", "acme"), tenant: "acme" });
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    const { rows } = await db.query<{ id: string }>(`SELECT p.id::text FROM projects p JOIN tenants t ON t.id = p.tenant_id WHERE t.slug = 'acme' LIMIT 1`);
    await db.end();
    const projectId = Buffer.from(`Project:${rows[0]!.id}`).toString("base64");

    const ask = async (server: Child, kind: Kind) => {
      const started = performance.now();
      const res = await fetch(`http://127.0.0.1:${server.port}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ ...KINDS[kind], variables: kind === "mutation" ? { i: { projectId, branch: "hung" } } : {} }),
      });
      const body = (await res.json()) as { errors?: { extensions?: { code?: string } }[] };
      const ms = performance.now() - started;
      return { ms, status: res.status, code: body.errors?.[0]?.extensions?.code ?? "", cache: res.headers.get("x-cache") ?? "" };
    };

    const figures = new Map<string, number[]>();
    const note = (key: string, ms: number) => figures.set(key, [...(figures.get(key) ?? []), ms]);
    for (let round = 1; round <= rounds; round++) {
      for (const kind of Object.keys(KINDS) as Kind[]) {
        const order = round % 2 ? servers : [...servers].reverse();
        for (const server of order) {
          await ask(server, kind);
          await ask(server, kind);
          redis.kill("SIGSTOP");
          const r = await ask(server, kind);
          redis.kill("SIGCONT");
          note(`${server.name} ${kind}`, r.ms);
          log(`round ${round} ${server.name} ${kind}: ${r.ms.toFixed(0)} ms (${r.status} ${r.code || r.cache})`);
          await sleep(2500);
        }
      }
      for (const server of round % 2 ? servers : [...servers].reverse()) {
        for (const kind of Object.keys(KINDS) as Kind[]) await ask(server, kind);
        redis.kill("SIGSTOP");
        const burst: number[] = [];
        for (const kind of Object.keys(KINDS) as Kind[]) burst.push((await ask(server, kind)).ms);
        redis.kill("SIGCONT");
        note(`${server.name} burst(query, cached, mutation) total`, burst.reduce((a, b) => a + b, 0));
        log(`round ${round} ${server.name} burst: ${burst.map((ms) => ms.toFixed(0)).join(" + ")} ms`);
        await sleep(2500);
      }
    }
    log("medians (ms):");
    for (const [key, xs] of figures) log(`  ${key}: ${median(xs).toFixed(0)} (${xs.map((x) => x.toFixed(0)).join(", ")})`);
  } finally {
    redis.kill("SIGCONT");
    for (const s of servers) await s.stop();
    redis.kill("SIGKILL");
    await admin.query("DROP DATABASE IF EXISTS tg_bench_hung WITH (FORCE)").catch(() => undefined);
    await admin.end();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
