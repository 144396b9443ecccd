import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Databases } from "../../src/db/clients.ts";
import { hourStart, requestCounterKey } from "../../src/infra/request-counter.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { createTestClients, createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { startOwnRedis, type OwnRedis } from "../helpers/own-redis.ts";
import { startServer, type ServerProcess } from "../helpers/server-process.ts";
import { eventually } from "../helpers/eventually.ts";

/**
 * Redis outage (issue 12 point 5, docs/degraded-modes.md), for real: a
 * server process over a redis-server of the test's own, which is killed and
 * started again. With Redis down every request is answered (a client-side
 * abort at 5 s never fires), /readyz says 503 with redis "down", reads and
 * ordinary mutations go on (authorization from PostgreSQL, the rate limit per
 * process), the window-quota mutation fails closed with SERVICE_UNAVAILABLE
 * and Retry-After, the log gets one line for the outage and none of
 * ioredis' unhandled errors. When Redis is back the server recovers without
 * a restart, and the request counts buffered meanwhile reach Redis.
 */

const JWT_SECRET = "redis-outage-secret-0123456789abcdef01234";
/** No answer within this is a hang: the request is aborted and the test fails. */
const HANG_MS = 5000;

interface Answer {
  status: number;
  headers: Headers;
  body: any;
  ms: number;
}

describe("Redis outage under a real server process", () => {
  let redis: OwnRedis;
  let db: TestDatabase;
  let clients: Databases;
  let server: ServerProcess;
  let owner: string;
  let acmeId: string;
  let projectId: string;
  let worstMs = 0;

  beforeAll(async () => {
    redis = await startOwnRedis();
    db = await createTestDatabase();
    server = await startServer({
      DATABASE_URL: db.url,
      REDIS_URL: redis.url,
      MIGRATE_ON_START: "true",
      SEED_ON_START: "true",
      JWT_SECRET,
      LOG_LEVEL: "info",
    });
    clients = createTestClients(db.url, 2);
    acmeId = (await clients.platform.tenant.findUniqueOrThrow({ where: { slug: "acme" } })).id;
    owner = await signDevToken({ secret: JWT_SECRET, sub: "owner@acme.test", tenant: "acme", ttl: "10m" });
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
    await clients?.close();
    await db?.drop();
    await redis?.close();
  });

  async function call(path: string, init: RequestInit = {}): Promise<Answer> {
    const t0 = performance.now();
    // Aborted (and the test failed by the rejection) if no answer comes within HANG_MS.
    const res = await fetch(`${server.url}${path}`, { ...init, signal: AbortSignal.timeout(HANG_MS) });
    const text = await res.text();
    const ms = performance.now() - t0;
    worstMs = Math.max(worstMs, ms);
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return { status: res.status, headers: res.headers, body, ms };
  }

  const gql = (query: string, variables?: Record<string, unknown>) =>
    call("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${owner}` },
      body: JSON.stringify({ query, variables }),
    });

  const createDeployment = () =>
    gql(`mutation($p: ID!) { createDeployment(input: { projectId: $p, branch: "main" }) { deployment { id } } }`, { p: projectId });

  const logLines = (msg: string) => server.output().split("\n").filter((l) => l.includes(`"msg":"${msg}`));

  it("with Redis down: answers at once, degraded as documented; recovers when Redis is back", async () => {
    // Healthy: everything works, including the window-quota mutation.
    const ready = await call("/readyz");
    expect(ready.status).toBe(200);
    const projects = await gql(`{ projects(first: 1) { edges { node { id } } } }`);
    projectId = projects.body.data.projects.edges[0].node.id;
    expect((await createDeployment()).body.errors).toBeUndefined();
    const readAll = () => Promise.all(Array.from({ length: 16 }, () => gql(`{ tenant { slug } projects(first: 5) { totalCount } }`)));
    // The same 16 concurrent reads with Redis up: the machine's own latency, to compare with.
    worstMs = 0;
    for (const r of await readAll()) expect(r.status).toBe(200);
    const upWorstMs = worstMs;
    worstMs = 0;

    await redis.kill();

    const down = await call("/readyz");
    expect(down.status).toBe(503);
    expect(down.body.dependencies).toEqual({ postgres: "ok", redis: "down" });

    // Reads, from 16 clients at once: authorization from PostgreSQL, the rate limit counted in the process.
    const reads = await readAll();
    for (const r of reads) {
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.data.tenant.slug).toBe("acme");
      expect(Number(r.headers.get("x-ratelimit-limit"))).toBe(1000);
    }

    // An ordinary mutation goes on (its quota is counted in PostgreSQL).
    const created = await gql(`mutation { createProject(input: { name: "Made during the outage" }) { project { id name } } }`);
    expect(created.body.errors).toBeUndefined();
    expect(await clients.platform.project.count({ where: { name: "Made during the outage" } })).toBe(1);

    // The window-quota mutation fails closed: 503, Retry-After, nothing written.
    const deploymentsBefore = await clients.platform.deployment.count({ where: { tenantId: acmeId } });
    const refused = await createDeployment();
    expect(refused.body.errors?.[0]?.extensions?.code).toBe("SERVICE_UNAVAILABLE");
    expect(refused.body.errors?.[0]?.extensions?.dependency).toBe("redis");
    expect(refused.headers.get("retry-after")).toBe("2");
    expect(refused.status).toBe(503);
    expect(await clients.platform.deployment.count({ where: { tenantId: acmeId } })).toBe(deploymentsBefore);

    const downWorstMs = worstMs;
    const outageRequests = 1 + 16 + 1 + 1; // readyz is not tenant-scoped: 18 counted

    // One line for the outage, none of ioredis' own (the child's output reaches this process through a pipe, maybe after its answers).
    await eventually("the outage's log line", () => logLines("redis unavailable").length > 0);
    expect(logLines("redis unavailable")).toHaveLength(1);
    expect(server.output()).not.toContain("Unhandled error event");

    await redis.start();
    // Recovery without a restart: /readyz turns green by itself (ioredis retries at least once a second).
    await eventually("/readyz 200 with Redis back", async () => (await call("/readyz")).status === 200);
    await eventually("the recovery's log line", () => logLines("redis available again").length > 0);
    expect(logLines("redis available again")).toHaveLength(1);
    const deployed = await createDeployment();
    expect(deployed.body.errors).toBeUndefined();

    // The counts buffered during the outage are in Redis after the next flush (at most 10 s).
    const key = requestCounterKey(acmeId, hourStart(Date.now()));
    let counted = 0;
    await eventually(
      "the buffered counts in Redis",
      async () => (counted = Number((await redis.client.get(key)) ?? 0)) >= outageRequests - 1,
      20_000,
    );
    // The restarted Redis started empty: what it holds was replayed from the buffer, plus the requests since.
    expect(counted).toBeGreaterThanOrEqual(outageRequests - 1);

    console.log(
      `redis outage: worst request latency with Redis down ${downWorstMs.toFixed(0)} ms (16 concurrent reads with Redis up: ${upWorstMs.toFixed(0)} ms) ` +
        `(readyz 503 in ${down.ms.toFixed(0)} ms, 16 concurrent reads 200, createProject 200, ` +
        `createDeployment 503 SERVICE_UNAVAILABLE Retry-After 2); ${counted} buffered/after counts in Redis after recovery`,
    );
  }, 120_000);
});
