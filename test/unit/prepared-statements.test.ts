import type pg from "pg";
import { describe, expect, it } from "vitest";
import { allowPreparedStatements, MAX_PREPARED_PER_CONNECTION, namedStatement } from "../../src/db/prepared-statements.ts";

/**
 * What a connection is told to send (src/db/prepared-statements.ts): Parse
 * once, Bind after; a failed message leaves its name counted but parsed
 * again; past the bound, the least recently used name is closed in the next
 * message, failed ones included, so a backend never holds more than the
 * bound whatever the texts. The PostgreSQL side: prepared-statements.test.ts
 * (integration).
 */
describe("named statements of one connection", () => {
  const connection = () => {
    const client = {} as pg.ClientBase;
    allowPreparedStatements(client);
    return client;
  };

  it("parses a text once, binds it after; a failed message makes it parse again", () => {
    const c = connection();
    const first = namedStatement(c, "SELECT 1")!;
    expect(first.parse).toBe(true);
    first.settle(true);
    const second = namedStatement(c, "SELECT 1")!;
    expect(second).toMatchObject({ name: first.name, parse: false });
    second.settle(false);
    expect(namedStatement(c, "SELECT 1")!.parse).toBe(true);
    expect(namedStatement(c, "SELECT 2")!.name).not.toBe(first.name);
  });

  it("a connection not allowed to prepare sends everything unnamed", () => {
    expect(namedStatement({} as pg.ClientBase, "SELECT 1")).toBeUndefined();
  });

  it("never counts more than the bound, failed messages included; evicted names are closed, again after a failed message", () => {
    const c = connection();
    const server = new Set<string>();
    const send = (text: string, ok: boolean) => {
      const n = namedStatement(c, text)!;
      // What PostgreSQL does with the message: closes first, then the Parse (which a failure may follow).
      if (ok) for (const name of n.closes) server.delete(name);
      if (n.parse) server.add(n.name);
      n.settle(ok);
      return n;
    };
    for (let i = 0; i < MAX_PREPARED_PER_CONNECTION * 3; i++) {
      send(`SELECT ${i}`, i % 3 !== 0);
      expect(server.size).toBeLessThanOrEqual(MAX_PREPARED_PER_CONNECTION + 1);
    }
    // Once a message succeeds, every eviction so far is closed.
    send("SELECT 'last'", true);
    expect(server.size).toBeLessThanOrEqual(MAX_PREPARED_PER_CONNECTION);
    // The most recently used stays prepared.
    expect(namedStatement(c, "SELECT 'last'")!.parse).toBe(false);
  });
});
