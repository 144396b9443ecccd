import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../helpers/app.ts";
import { BLOCKED_BY_ME, eventually } from "../helpers/eventually.ts";

/**
 * A statement timeout, a cancel or a lock timeout before any resolver runs:
 * in the message that opens the request's transaction (the authorization
 * facts, src/tenancy/authorize.ts) or in the context's directory read
 * (src/tenancy/directory.ts). Review-1330 F1 saw them answered as a bare
 * HTTP 500 INTERNAL_SERVER_ERROR, with no Retry-After: they are
 * QUERY_TIMEOUT (57014) or SERVICE_UNAVAILABLE (55P03), 503 + Retry-After,
 * mapped once by the error mask (src/infra/unavailable.ts). The waits end by
 * PostgreSQL's own timeouts (globex is FREE: 5 s) or a pg_cancel_backend,
 * never a sleep.
 */

/** A connection of the test's own holding `LOCK TABLE <table> IN ACCESS EXCLUSIVE MODE` until `fn` ends. */
async function whileTableLocked<T>(url: string, table: string, fn: (holder: pg.Client) => Promise<T>): Promise<T> {
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  try {
    await holder.query("BEGIN");
    await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    return await fn(holder);
  } finally {
    await holder.query("ROLLBACK").catch(() => {});
    await holder.end();
  }
}

function expectRetryable(res: Awaited<ReturnType<TestApp["gql"]>>, code: string) {
  expect(res.status).toBe(503);
  expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
  expect(res.body.errors).toHaveLength(1);
  expect(res.body.errors![0].extensions.code).toBe(code);
  expect(JSON.stringify(res.body)).not.toMatch(/SELECT|memberships|users|app_request_facts|statement_timeout|lock timeout|at .*\.ts/i);
}

describe("a timeout before the first resolver", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("answers a statement timeout in the opening message (query and mutation) QUERY_TIMEOUT, 503 + Retry-After", async () => {
    const token = await t.memberToken("globex", "DEVELOPER");
    // The directory's entries are warm: only the facts statement reads memberships.
    expect((await t.gql(`{ tenant { slug } }`, { token })).body.errors).toBeUndefined();
    const project = await t.clients.platform.project.findFirstOrThrow({ where: { tenant: { slug: "globex" } } });
    const [query, mutation] = await whileTableLocked(t.db.url, "memberships", () =>
      Promise.all([
        t.gql(`{ tenant { slug } }`, { token }),
        t.gql(`mutation($i: UpdateProjectInput!) { updateProject(input: $i) { project { name } } }`, {
          token,
          variables: { i: { id: Buffer.from(`Project:${project.id}`).toString("base64"), name: "Renamed" } },
        }),
      ]),
    );
    expectRetryable(query, "QUERY_TIMEOUT");
    expectRetryable(mutation, "QUERY_TIMEOUT");
    expect((await t.clients.platform.project.findFirstOrThrow({ where: { id: project.id } })).name).toBe(project.name);
  });

  it("answers a cancelled directory read (cold cache) QUERY_TIMEOUT, 503 + Retry-After", async () => {
    // acme's VIEWER was never asked for: the directory reads the user by subject.
    const token = await t.memberToken("acme", "VIEWER");
    const res = await whileTableLocked(t.db.url, "users", async (holder) => {
      const pending = t.gql(`{ tenant { slug } }`, { token });
      // (Waiting in its Parse, pg_stat_activity still shows its previous statement.)
      let waiting: number | undefined;
      await eventually("the directory's read waiting for the lock on users", async () => {
        const { rows } = await holder.query<{ pid: number }>(BLOCKED_BY_ME);
        waiting = rows[0]?.pid;
        return waiting !== undefined;
      });
      await holder.query("SELECT pg_cancel_backend($1)", [waiting]);
      return pending;
    });
    expectRetryable(res, "QUERY_TIMEOUT");
  });
});

describe("a lock timeout before the first resolver", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
    // New sessions of the test database give up a lock wait after 200 ms
    // (the tier pools connect on their first request, below).
    const admin = new pg.Client({ connectionString: t.db.url });
    await admin.connect();
    await admin.query(`ALTER DATABASE "${t.db.name}" SET lock_timeout = '200ms'`);
    await admin.end();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("answers a lock timeout (55P03) in the opening message SERVICE_UNAVAILABLE, 503 + Retry-After", async () => {
    const token = await t.memberToken("acme", "DEVELOPER");
    expect((await t.gql(`{ tenant { slug } }`, { token })).body.errors).toBeUndefined();
    const res = await whileTableLocked(t.db.url, "memberships", () => t.gql(`{ tenant { slug } }`, { token }));
    expectRetryable(res, "SERVICE_UNAVAILABLE");
  });
});
