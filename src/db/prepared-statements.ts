import { createHash } from "node:crypto";
import type pg from "pg";

/**
 * Named (prepared) statements for the request path's own statements
 * (docs/request-path.md, "Prepared statements"): a planned read's
 * statement is parsed once per connection and then only bound and
 * executed, and after five executions PostgreSQL keeps one generic plan for
 * it, where an unnamed statement is parsed and planned every time (the
 * dashboard's: 2.0 ms of planning for 0.4 ms of execution, bench/pg-cost.ts).
 *
 * Only connections of pools made with prepared statements on
 * (DATABASE_PREPARED_STATEMENTS, default on; off behind a pooler that
 * hands one client's statements to another server connection, such as
 * PgBouncer before 1.21 in transaction mode) keep any. A connection keeps
 * at most MAX_PREPARED_PER_CONNECTION: past it a new text runs unnamed.
 * The values are always bound parameters, so one statement serves every
 * tenant; what a tenant may read is decided at execution by RLS and the
 * settings of the transaction, as for an unnamed statement.
 */
export const MAX_PREPARED_PER_CONNECTION = 64;

/** The names a connection has prepared, for connections that may prepare. */
const preparedOn = new WeakMap<pg.ClientBase, Set<string>>();

/** Lets `client` keep named statements (its pool's connect hook). */
export function allowPreparedStatements(client: pg.ClientBase): void {
  preparedOn.set(client, new Set());
}

const NAMES_KEPT = 1024;
const names = new Map<string, string>();

/** The name of `text`: a hash of it, so two texts never share one. */
function nameOf(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    if (names.size >= NAMES_KEPT) names.clear();
    name = `tg_${createHash("sha256").update(text).digest("hex").slice(0, 32)}`;
    names.set(text, name);
  }
  return name;
}

/** How a statement is sent on a connection that prepares: by name, parsed first or not. */
export interface NamedStatement {
  name: string;
  /** Not known to be prepared on the connection: Close (in case a failed message left it) and Parse it first. */
  parse: boolean;
  /** After the message: prepared for sure when it succeeded; unknown otherwise (parsed again next time). */
  settle(ok: boolean): void;
}

/** `text` as a named statement on `client`; undefined: send it unnamed. */
export function namedStatement(client: pg.ClientBase, text: string): NamedStatement | undefined {
  const known = preparedOn.get(client);
  if (!known) return undefined;
  const name = nameOf(text);
  const parse = !known.has(name);
  if (parse && known.size >= MAX_PREPARED_PER_CONNECTION) return undefined;
  return { name, parse, settle: (ok) => void (ok ? known.add(name) : known.delete(name)) };
}
