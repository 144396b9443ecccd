import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { APP_ROLE, createPool } from "../../src/db/clients.ts";
import { connectFor, type TierPool } from "../../src/db/tier-pool.ts";
import { ClientGone } from "../../src/db/time-share.ts";
import { Prisma } from "../../src/generated/prisma/client.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { TenantDb } from "../../src/tenancy/tenant-db.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/**
 * Review F4 (docs/request-path.md, "A client that goes away"): a checkout
 * whose client has gone leaves the tier pool's queue and takes no
 * connection (`connectFor(pool, tenant, signal)`: the request's transaction
 * passes Yoga's `request.signal`, TransactionSettings.signal); a request whose client went before its execution is not executed
 * (src/http/use-client-gone.ts); a mutation that started before its client
 * went still commits. FREE's two connections are held by slow queries that
 * wait on advisory locks the test holds (as tier-fairness.test.ts does);
 * the gate's deadlines run on a manual clock that does not move. Nothing is
 * asserted about elapsed time.
 */
const LOCK = 4_242_071;
const FREE = 2;
const CREATE_PROJECT = `mutation($i: CreateProjectInput!) { createProject(input: $i) { project { name } } }`;

let t: TestApp;
let ids: Record<string, string>;
let owner: pg.Client;
let server: Server;
/** The app's log lines (one per request: its id, status). */
const logged: { requestId?: string; status?: number }[] = [];
let url: string;
const clock = new ManualClock();

beforeAll(async () => {
  const logger = createLogger("info", { write: (line: string) => void logged.push(JSON.parse(line) as { requestId?: string }) });
  t = await createTestApp({ pools: { FREE, PRO: 2, ENTERPRISE: 2, platform: 2, live: 1 }, timeShares: { plans: {}, windowMs: 1000, clock }, logger });
  ids = await tenantIdsBySlug(t);
  owner = new pg.Client({ connectionString: t.db.url });
  await owner.connect();
  server = createServer(t.app);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
}, 120_000);

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await owner?.end();
  await t?.close();
});

/** A slow query on FREE's pool (acme taken for a FREE tenant) waiting for lock `LOCK + i`. */
function slowQuery(i: number) {
  const db = new TenantDb(t.clients.app, { tenantId: ids.acme!, plan: "FREE", statementTimeoutMs: 0, mode: "request" });
  return db.queryRaw(Prisma.sql`SELECT pg_advisory_xact_lock_shared(${LOCK + i}::bigint)`).finally(() => db.finish());
}

async function waitingOnLocks(): Promise<number> {
  const { rows } = await owner.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid BETWEEN $1 AND $2 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [LOCK, LOCK + 9],
  );
  return rows[0]!.n;
}

/** POST /graphql over real HTTP; `signal` aborts it from the client's side. */
async function post(token: string, query: string, variables: Record<string, unknown>, signal?: AbortSignal) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
    signal,
  });
  return { status: res.status, body: (await res.json()) as { data?: any; errors?: any[] } };
}

const projectsNamed = (name: string) => t.clients.platform.project.count({ where: { name } });

describe("a client that goes away", () => {
  it("a queued checkout whose client aborts leaves the queue and never takes a connection; the next waiter gets the freed place", async () => {
    const pool = t.clients.appPools.FREE as TierPool;
    await owner.query("SELECT pg_advisory_lock($1::bigint), pg_advisory_lock($2::bigint)", [LOCK, LOCK + 1]);
    const held = new Set([0, 1]);
    const unlock = async (i: number) => {
      await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK + i]);
      held.delete(i);
    };
    try {
      // acme's slow queries hold FREE's two connections.
      const slow = [slowQuery(0), slowQuery(1)];
      await vi.waitFor(async () => expect(await waitingOnLocks()).toBe(FREE), { timeout: 30_000, interval: 20 });

      // globex's request queues with its client's signal; a second one queues behind it, in the same lane.
      const goneBefore = pool.timeShare.stats.gone;
      const client = new AbortController();
      const abandoned = connectFor(pool, ids.globex!, client.signal);
      const next = connectFor(pool, ids.globex!);
      expect(pool.waitingCount).toBe(2);

      client.abort();
      // It left the queue at once, with both connections still held: it took none.
      expect(pool.waitingCount).toBe(1);
      await expect(abandoned).rejects.toBeInstanceOf(ClientGone);
      expect(pool.timeShare.stats.gone).toBe(goneBefore + 1);
      expect(pool.totalCount).toBe(FREE);

      // One connection is given back: it goes to the next waiter (the abandoned one would have had it).
      await unlock(0);
      const connection = await next;
      expect((await connection.query("SELECT 1 AS one")).rows[0].one).toBe(1);
      connection.release();
      expect(held.has(1)).toBe(true);
      await unlock(1);
      await Promise.all(slow);
      expect(pool.waitingCount).toBe(0);
    } finally {
      for (const i of [...held]) await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK + i]);
    }
  });

  it("over HTTP: a query queued for FREE's connections whose client aborts leaves the queue (the request's signal reaches the checkout)", async () => {
    const pool = t.clients.appPools.FREE as TierPool;
    const token = await t.memberToken("globex", "VIEWER"); // globex is FREE
    await owner.query("SELECT pg_advisory_lock($1::bigint), pg_advisory_lock($2::bigint)", [LOCK + 2, LOCK + 3]);
    const held = new Set([2, 3]);
    try {
      const slow = [slowQuery(2), slowQuery(3)];
      await vi.waitFor(async () => expect(await waitingOnLocks()).toBe(FREE), { timeout: 30_000, interval: 20 });
      const goneBefore = pool.timeShare.stats.gone;

      const client = new AbortController();
      const abandoned = post(token, `{ projects(first: 2) { edges { node { id } } } }`, {}, client.signal).catch((err: unknown) => err);
      // Its checkout waits in FREE's queue: both connections are held.
      await vi.waitFor(() => expect(pool.waitingCount).toBe(1), { timeout: 30_000, interval: 20 });

      client.abort();
      expect(((await abandoned) as Error).name).toBe("AbortError");
      // The server saw the client go: the checkout left the queue with both connections still held, taking none.
      await vi.waitFor(() => expect(pool.waitingCount).toBe(0), { timeout: 30_000, interval: 20 });
      expect(pool.timeShare.stats.gone).toBe(goneBefore + 1);
      expect(pool.totalCount).toBe(FREE);
      expect(await waitingOnLocks()).toBe(FREE);

      for (const i of [...held]) {
        await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK + i]);
        held.delete(i);
      }
      await Promise.all(slow);
      // The same query with its client there is answered.
      const answered = await post(token, `{ projects(first: 2) { edges { node { id } } } }`, {});
      expect(answered.body.errors).toBeUndefined();
      expect(answered.body.data.projects.edges.length).toBeGreaterThan(0);
    } finally {
      for (const i of [...held]) await owner.query("SELECT pg_advisory_unlock($1::bigint)", [LOCK + i]);
    }
  });

  it("a request whose client went before its execution is not executed: nothing of it commits", async () => {
    const token = await t.memberToken("globex", "DEVELOPER");
    const name = `gone-before-${Date.now()}`;
    const requestId = `gone-${Date.now()}`;
    const client = new AbortController();
    client.abort();
    // The handler starts; the caller is told at once that its request was aborted.
    const answered = await Promise.resolve()
      .then(() =>
        t.app.fetch("http://localhost/graphql", {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "x-request-id": requestId },
          body: JSON.stringify({ query: CREATE_PROJECT, variables: { i: { name } } }),
          signal: client.signal,
        }),
      )
      .catch((err: unknown) => err);
    expect((answered as Error).name).toBe("AbortError");
    // The server still handles it to its end (its log line), without executing it.
    await vi.waitFor(() => expect(logged.some((l) => l.requestId === requestId)).toBe(true), { timeout: 30_000, interval: 20 });
    expect(await projectsNamed(name)).toBe(0);
    // The same request with its client there commits (so nothing else refused it).
    expect((await post(token, CREATE_PROJECT, { i: { name } })).body.data.createProject.project.name).toBe(name);
    expect(await projectsNamed(name)).toBe(1);
  });

  it("a request whose client went before it asked for a connection never takes one, even with one free", async () => {
    const pool = createPool(t.db.url, APP_ROLE, 1, { windowMs: 1000, clock });
    try {
      const client = new AbortController();
      client.abort();
      await expect(connectFor(pool, "a", client.signal)).rejects.toBeInstanceOf(ClientGone);
      // No connection was opened, none is held: the next request takes the one there is.
      expect(pool.totalCount).toBe(0);
      const c = await connectFor(pool, "b");
      expect((await c.query("SELECT 1 AS one")).rows[0].one).toBe(1);
      c.release();
    } finally {
      await pool.end();
    }
  });

  it("a mutation that started before its client went still commits (its answer is lost; Idempotency-Key settles a retry)", async () => {
    const token = await t.memberToken("acme", "DEVELOPER");
    const name = `left-${Date.now()}`;
    const locker = new pg.Client({ connectionString: t.db.url });
    await locker.connect();
    try {
      await locker.query("BEGIN; LOCK TABLE projects IN EXCLUSIVE MODE");
      const client = new AbortController();
      const abandoned = post(token, CREATE_PROJECT, { i: { name } }, client.signal).catch((err: unknown) => err);
      // Its INSERT runs (waiting on the table lock) in its transaction: it has started.
      await vi.waitFor(
        async () => {
          const { rows } = await owner.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO "public"."projects"%'`,
          );
          expect(rows[0].n).toBe(1);
        },
        { timeout: 30_000, interval: 20 },
      );
      client.abort();
      expect(((await abandoned) as Error).name).toBe("AbortError");
      await locker.query("COMMIT");
      await vi.waitFor(async () => expect(await projectsNamed(name)).toBe(1), { timeout: 30_000, interval: 20 });
    } finally {
      await locker.query("ROLLBACK").catch(() => undefined);
      await locker.end();
    }
  });
});
