import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../../src/db/clients.ts";
import { createEmptyDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * PostgreSQL closing a connection that a request holds (a restart, a crash,
 * an admin's pg_terminate_backend): the chaos run (docs/chaos.md) saw every
 * PostgreSQL stop kill a replica, because pg raises the error as an 'error'
 * event on the checked-out client, where the pool's own listener (idle
 * clients only) is not. The request's query must fail, the process live on,
 * and the pool serve again.
 */
describe("a checked-out connection that PostgreSQL closes", () => {
  let db: TestDatabase;
  let admin: pg.Client;
  beforeAll(async () => {
    db = await createEmptyDatabase();
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await db?.drop();
  });

  it("fails the holder's query without an uncaught error, and the pool serves again", async () => {
    const pool = createPool(db.url, undefined, 2);
    try {
      const client = await pool.connect();
      expect(client.listenerCount("error"), "a checked-out client has an error listener").toBeGreaterThan(0);
      const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      const ended = new Promise<void>((resolve) => client.once("end", () => resolve()));
      await admin.query("SELECT pg_terminate_backend($1)", [rows[0]!.pid]);
      await ended;
      await expect(client.query("SELECT 1")).rejects.toThrow();
      client.release(new Error("terminated by the server"));
      const again = await pool.query<{ one: number }>("SELECT 1 AS one");
      expect(again.rows[0]!.one).toBe(1);
    } finally {
      await pool.end();
    }
  });
});
