import { connect } from "node:net";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toGlobalId } from "../../src/graphql/ids.ts";
import { createTestApp, tenantIdsBySlug, type TestApp } from "../helpers/app.ts";
import { eventually } from "../helpers/eventually.ts";

/**
 * Idempotency keys (docs/idempotency.md), against the real PostgreSQL:
 * replay, a key reused for another request, a concurrent duplicate, keys
 * scoped by tenant and caller, expiry, and the lost acknowledgement (the
 * change committed, the answer never reached the client).
 */

const CREATE_PROJECT = `mutation($input: CreateProjectInput!) { createProject(input: $input) { project { id name slug } } }`;
const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id name } secret } }`;
const CREATE_DEPLOYMENT = `mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { deployment { id } } }`;

let t: TestApp;
let ids: Record<string, string>;
let su: pg.Client;
let n = 0;
const unique = (p: string) => `${p}-${Date.now().toString(36)}-${++n}`;

beforeAll(async () => {
  t = await createTestApp();
  ids = await tenantIdsBySlug(t);
  su = new pg.Client({ connectionString: t.db.url });
  await su.connect();
});
afterAll(async () => {
  await su?.end();
  await t?.close();
});

const projectsNamed = async (name: string) =>
  (await su.query(`SELECT tenant_id::text FROM projects WHERE name = $1`, [name])).rows.map((r) => r.tenant_id as string);

const send = async (slug: string, role: "OWNER" | "ADMIN" | "DEVELOPER", key: string | undefined, query: string, variables: Record<string, unknown>) =>
  t.gql(query, { token: await t.memberToken(slug, role), variables, headers: key === undefined ? {} : { "idempotency-key": key } });

/** Runs `fn` while the projects table is locked against inserts; resolves once `blocked` backends wait on it. */
async function withProjectsLocked<T>(fn: (waitForBlocked: (count: number) => Promise<void>) => Promise<T>): Promise<T> {
  const locker = new pg.Client({ connectionString: t.db.url });
  await locker.connect();
  await locker.query("BEGIN; LOCK TABLE projects IN EXCLUSIVE MODE");
  const waitForBlocked = (count: number) =>
    eventually(`${count} inserts waiting on the lock`, async () => {
      const { rows } = await su.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO "public"."projects"%'`,
      );
      return rows[0].n >= count;
    });
  try {
    return await fn(waitForBlocked);
  } finally {
    await locker.query("COMMIT").catch(() => undefined);
    await locker.end();
  }
}

describe("Idempotency-Key on mutations", () => {
  it("a retry with the same key and request gets the stored answer, marked Idempotency-Replayed, and does not run again", async () => {
    const key = unique("replay");
    const name = unique("idem");
    const first = await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
    expect(first.body.errors).toBeUndefined();
    expect(first.headers.get("idempotency-replayed")).toBeNull();
    const again = await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotency-replayed")).toBe("true");
    expect(again.body).toEqual(first.body);
    expect(await projectsNamed(name)).toEqual([ids.acme]);
    const audit = await su.query(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'project.create' AND target_id = $1`, [first.body.data.createProject.project.id]);
    expect(audit.rows[0].n).toBe(1);
  });

  it("without the header, the same request runs twice (the key is what makes a retry safe)", async () => {
    const name = unique("nokey");
    const a = await send("acme", "DEVELOPER", undefined, CREATE_PROJECT, { input: { name } });
    const b = await send("acme", "DEVELOPER", undefined, CREATE_PROJECT, { input: { name } });
    expect(a.body.errors).toBeUndefined();
    // The slug is unique per tenant: the second run is refused by the data, not by a key.
    expect(b.body.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    expect(b.headers.get("idempotency-replayed")).toBeNull();
  });

  it("the same key with a different request: IDEMPOTENCY_KEY_REUSED (422) naming the header, nothing run", async () => {
    const key = unique("mismatch");
    const name = unique("idem");
    expect((await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } })).body.errors).toBeUndefined();
    const other = unique("idem");
    const res = await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name: other } });
    expect(res.status).toBe(422);
    expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: "IDEMPOTENCY_KEY_REUSED", header: "Idempotency-Key" });
    expect(res.body.data ?? null).toBeNull();
    expect(await projectsNamed(other)).toEqual([]);
  });

  it("a concurrent duplicate while the first still runs: IDEMPOTENCY_KEY_IN_USE (409, Retry-After), never a second run", async () => {
    const key = unique("concurrent");
    const name = unique("idem");
    const { first, duplicate } = await withProjectsLocked(async (waitForBlocked) => {
      const first = send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
      await waitForBlocked(1);
      const duplicate = await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
      return { first, duplicate };
    });
    expect(duplicate.status).toBe(409);
    expect(duplicate.headers.get("retry-after")).toBe("1");
    expect(duplicate.body.errors?.[0]?.extensions).toMatchObject({ code: "IDEMPOTENCY_KEY_IN_USE", header: "Idempotency-Key" });
    const done = await first;
    expect(done.body.errors).toBeUndefined();
    const later = await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
    expect(later.headers.get("idempotency-replayed")).toBe("true");
    expect(later.body).toEqual(done.body);
    expect(await projectsNamed(name)).toEqual([ids.acme]);
  });

  it("keys are per tenant and per caller: tenant B and another caller of A reusing A's key run their own request and never see A's answer", async () => {
    const key = unique("shared");
    const name = unique("idem");
    const a = await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
    expect(a.body.errors).toBeUndefined();
    const b = await send("wayne", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
    expect(b.body.errors).toBeUndefined();
    expect(b.headers.get("idempotency-replayed")).toBeNull();
    expect(b.body.data.createProject.project.id).not.toBe(a.body.data.createProject.project.id);
    const admin = await send("acme", "ADMIN", key, CREATE_PROJECT, { input: { name: unique("idem") } });
    expect(admin.body.errors).toBeUndefined();
    expect(admin.headers.get("idempotency-replayed")).toBeNull();
    expect((await projectsNamed(name)).sort()).toEqual([ids.acme, ids.wayne].sort());
    // The database wall: as the app role in tenant wayne, acme's keys do not exist.
    const app = new pg.Client({ connectionString: t.db.url });
    await app.connect();
    try {
      await app.query("BEGIN; SET LOCAL ROLE tenantgraph_app");
      await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [ids.wayne]);
      const { rows } = await app.query(`SELECT DISTINCT tenant_id::text FROM idempotency_keys WHERE key = $1`, [key]);
      expect(rows).toEqual([{ tenant_id: ids.wayne }]);
      await expect(app.query(`INSERT INTO idempotency_keys (tenant_id, caller, key, request_hash, expires_at) VALUES ($1, 'x', 'y', 'z', now())`, [ids.acme])).rejects.toThrow(/row-level security/);
    } finally {
      await app.query("ROLLBACK").catch(() => undefined);
      await app.end();
    }
  });

  it("the lost acknowledgement: committed, the answer never arrived; the retry gets the stored answer and no second row", async () => {
    const key = unique("lost-ack");
    const name = unique("idem");
    const server: Server = createServer(t.app);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const { port } = server.address() as AddressInfo;
      const token = await t.memberToken("acme", "DEVELOPER");
      await withProjectsLocked(async (waitForBlocked) => {
        const body = JSON.stringify({ query: CREATE_PROJECT, variables: { input: { name } } });
        const socket = connect(port, "127.0.0.1");
        socket.on("error", () => {});
        await new Promise<void>((r) => socket.once("connect", () => r()));
        socket.write(
          `POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\n` +
            `Idempotency-Key: ${key}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
        // The mutation is inside its transaction, waiting for the table: the client goes away for good.
        await waitForBlocked(1);
        socket.destroy();
      });
      // The server carries on and commits though nobody will read the answer.
      await eventually("the abandoned mutation's project", async () => (await projectsNamed(name)).length > 0);
      await eventually("the abandoned mutation's stored answer", async () => {
        const { rows } = await su.query(`SELECT response IS NOT NULL AS done FROM idempotency_keys WHERE key = $1`, [key]);
        return rows[0]?.done === true;
      });
      const retry = await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
      expect(retry.status).toBe(200);
      expect(retry.headers.get("idempotency-replayed")).toBe("true");
      expect(retry.body.data.createProject.project.name).toBe(name);
      expect(await projectsNamed(name)).toEqual([ids.acme]);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it("the mutation's connection killed before its COMMIT: 503 SERVICE_UNAVAILABLE with no data, nothing stored, and the retry with the same key runs once", async () => {
    const key = unique("killed");
    const name = unique("idem");
    const res = await withProjectsLocked(async (waitForBlocked) => {
      const pending = send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
      await waitForBlocked(1);
      await su.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO "public"."projects"%'`,
      );
      return pending;
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBeTruthy();
    expect(res.body.data ?? null).toBeNull();
    expect(res.body.errors?.map((e: any) => e.extensions?.code)).toContain("SERVICE_UNAVAILABLE");
    expect(await projectsNamed(name)).toEqual([]);
    expect((await su.query(`SELECT count(*)::int AS n FROM idempotency_keys WHERE key = $1`, [key])).rows[0].n).toBe(0);
    const retry = await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
    expect(retry.body.errors).toBeUndefined();
    expect(retry.headers.get("idempotency-replayed")).toBeNull();
    expect(await projectsNamed(name)).toEqual([ids.acme]);
  });

  it("a refusal is stored and replayed like a success (the request was handled); a createApiKey answer is stored encrypted", async () => {
    const key = unique("refusal");
    const missing = { input: { projectId: toGlobalId("Project", "00000000-0000-4000-8000-000000000000"), branch: "x" } };
    const first = await send("acme", "DEVELOPER", key, CREATE_DEPLOYMENT, missing);
    expect(first.body.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    const again = await send("acme", "DEVELOPER", key, CREATE_DEPLOYMENT, missing);
    expect(again.headers.get("idempotency-replayed")).toBe("true");
    expect(again.body).toEqual(first.body);

    const keyName = unique("key");
    const created = await send("acme", "OWNER", unique("apikey"), CREATE_KEY, { input: { name: keyName, role: "DEVELOPER" } });
    const secret = created.body.data.createApiKey.secret as string;
    expect(secret).toMatch(/^tgk_/);
    const { rows } = await su.query(`SELECT response FROM idempotency_keys WHERE tenant_id = $1 AND response IS NOT NULL`, [ids.acme]);
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) expect((r.response as Buffer).includes(Buffer.from(secret))).toBe(false);
  });

  it("an expired key is claimed afresh, and a stored answer sweeps the tenant's expired keys", async () => {
    const key = unique("expired");
    expect((await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name: unique("idem") } })).body.errors).toBeUndefined();
    const stale = unique("stale");
    await su.query(
      `INSERT INTO idempotency_keys (tenant_id, caller, key, request_hash, response, expires_at) VALUES ($1, 'user:x', $2, 'h', '\\x00', now() - interval '1 hour')`,
      [ids.acme, stale],
    );
    await su.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1`, [key]);
    const name = unique("idem");
    const fresh = await send("acme", "DEVELOPER", key, CREATE_PROJECT, { input: { name } });
    expect(fresh.body.errors).toBeUndefined();
    expect(fresh.headers.get("idempotency-replayed")).toBeNull();
    expect(await projectsNamed(name)).toEqual([ids.acme]);
    const left = await su.query(`SELECT key, expires_at > now() AS live FROM idempotency_keys WHERE key = ANY($1)`, [[key, stale]]);
    expect(left.rows).toEqual([{ key, live: true }]);
  });

  it("a malformed key, a key on a batch's second mutation: BAD_REQUEST naming the header; queries ignore the header", async () => {
    const long = await send("acme", "DEVELOPER", "k".repeat(256), CREATE_PROJECT, { input: { name: unique("idem") } });
    expect(long.status).toBe(400);
    expect(long.body.errors?.[0]?.extensions).toMatchObject({ code: "BAD_REQUEST", header: "Idempotency-Key" });
    const query = await t.gql(`{ projects(first: 1) { totalCount } }`, { token: await t.memberToken("acme", "VIEWER"), headers: { "idempotency-key": unique("q") } });
    expect(query.body.errors).toBeUndefined();
    const res = await t.app.fetch("http://localhost/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await t.memberToken("acme", "DEVELOPER")}`, "idempotency-key": unique("batch") },
      body: JSON.stringify([
        { query: CREATE_PROJECT, variables: { input: { name: unique("idem") } } },
        { query: CREATE_PROJECT, variables: { input: { name: unique("idem") } } },
      ]),
    });
    const answers = (await res.json()) as { data?: any; errors?: any[] }[];
    expect(answers.map((a) => a.errors?.[0]?.extensions?.code ?? "ok").sort()).toEqual(["BAD_REQUEST", "ok"]);
  });
});
