import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * Behind PgBouncer in transaction pooling mode (docs/scale-out.md) a server
 * connection passes to another client after every transaction, so the server
 * may keep no session state on it. The runtime code of src/ must not use any
 * of these; test/integration/pgbouncer.test.ts (`npm run test:pgbouncer`)
 * runs the server through a real PgBouncer.
 *
 * The one allowed exception: the migration runner (src/db/migrate.ts) holds a
 * session advisory lock across the migrations (and may set a placement's
 * search_path for the session), and so connects directly, never through
 * PgBouncer: DATABASE_URL is the migrator's direct URL (docs/scale-out.md).
 * Likewise a tenant move (src/db/placement-move*.ts) holds its write fence,
 * a session advisory lock (with a session lock_timeout while it waits), on
 * connections of its own to the owners' direct URLs, never pooled; its copy
 * workers (src/db/placement-copy.ts) also run on those direct connections and
 * stage rows that may exist already in a temporary table dropped at COMMIT.
 */
const SESSION_STATE: [string, RegExp][] = [
  ["LISTEN/NOTIFY (a listener lives on one session)", /\b(LISTEN|UNLISTEN)\s+\w|pg_notify\s*\(/],
  ["a session advisory lock (use pg_advisory_xact_lock)", /pg_(try_)?advisory_(lock|unlock|lock_shared)\s*\(/],
  ["set_config(..., false) (session-wide; use true)", /set_config\([^)]*,\s*false\s*\)/i],
  ["SET without LOCAL (session-wide)", /[`"';]\s*SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)(SESSION\s+)?[a-z_.]+\s*(=|TO\b)/],
  ["a temporary table (lives on one session)", /CREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\s+TABLE/i],
  ["a named prepared statement (PgBouncer 1.18 has no max_prepared_statements)", /\bPREPARE\s+\w+\s+(\(|AS\b)|statementNameGenerator|\bname:\s*["'`][\w-]+["'`],\s*text:|queryMode:\s*"extended",\s*name:/],
  ["a cursor WITH HOLD (outlives its transaction)", /WITH\s+HOLD/i],
];
const ALLOWED: Record<string, string[]> = {
  "src/db/migrate.ts": ["a session advisory lock (use pg_advisory_xact_lock)", "SET without LOCAL (session-wide)"],
  "src/db/placement-move.ts": ["a session advisory lock (use pg_advisory_xact_lock)"],
  "src/db/placement-move-steps.ts": ["a session advisory lock (use pg_advisory_xact_lock)", "SET without LOCAL (session-wide)"],
  "src/db/placement-copy.ts": ["a temporary table (lives on one session)"],
  // A planned read's statement by name, only on pools made with
  // DATABASE_PREPARED_STATEMENTS on (src/db/prepared-statements.ts); off
  // behind PgBouncer before 1.21, as `npm run test:pgbouncer` runs.
  "src/tenancy/statement-then-commit.ts": ["a named prepared statement (PgBouncer 1.18 has no max_prepared_statements)"],
};

const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (e.name === "generated" ? [] : files(path.join(dir, e.name))) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : [],
  );

describe("no session state on a pooled connection (PgBouncer transaction mode)", () => {
  it("the patterns find what they are meant to", () => {
    const hits = (sql: string) => SESSION_STATE.filter(([, re]) => re.test(sql)).map(([name]) => name);
    expect(hits("`LISTEN tenant_events`")).toHaveLength(1);
    expect(hits("SELECT pg_advisory_lock(1)")).toHaveLength(1);
    expect(hits("SELECT pg_advisory_xact_lock(1)")).toHaveLength(0);
    expect(hits("SELECT set_config('app.tenant_id', $1, false)")).toHaveLength(1);
    expect(hits("SELECT set_config('app.tenant_id', $1, true)")).toHaveLength(0);
    expect(hits("`SET search_path = tenant_a`")).toHaveLength(1);
    expect(hits("'SET statement_timeout TO 5'")).toHaveLength(1);
    expect(hits("`SET LOCAL search_path = tenant_a`")).toHaveLength(0);
    expect(hits("`SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`")).toHaveLength(0);
    expect(hits("`UPDATE t\n  SET name = $1`")).toHaveLength(0);
    expect(hits("CREATE TEMP TABLE x (a int)")).toHaveLength(1);
    expect(hits("{ name: 'find-user', text: 'SELECT 1' }")).toHaveLength(1);
    expect(hits('super({ text, values, queryMode: "extended", name: named?.name })')).toHaveLength(1);
  });

  it("src/ holds none of them, but the migration runner's lock", () => {
    const found: string[] = [];
    for (const file of files("src")) {
      const rel = file.split(path.sep).join("/");
      const text = readFileSync(file, "utf8");
      for (const [name, re] of SESSION_STATE) {
        if (re.test(text) && !ALLOWED[rel]?.includes(name)) found.push(`${rel}: ${name}`);
      }
    }
    expect(found).toEqual([]);
  });
});
