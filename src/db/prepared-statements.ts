import { createHash } from "node:crypto";
import type pg from "pg";

/**
 * Named (prepared) statements for a planned read's one message
 * (docs/request-path.md, "Prepared statements"): its facts statement and its
 * planned statement are parsed once per connection and then only bound and
 * executed, and after five executions PostgreSQL keeps one generic plan for
 * each, where an unnamed statement is parsed and planned every time (the
 * dashboard's: 2.0 ms of planning for 0.4 ms of execution, bench/pg-cost.ts).
 *
 * Only connections of pools made with prepared statements on
 * (DATABASE_PREPARED_STATEMENTS, default on; off behind a pooler that
 * hands one client's statements to another server connection, such as
 * PgBouncer before 1.21 in transaction mode) keep any, at most
 * MAX_PREPARED_PER_CONNECTION, least recently used first out: an evicted
 * name is closed in the connection's next message. A name that may exist
 * on the server (its message failed after the Parse) counts as prepared
 * until it is parsed again or closed, so what a backend holds stays within
 * the bound whatever the texts (a client's aliases are part of a planned
 * statement's text). The values are always bound parameters, so one
 * statement serves every tenant; what a tenant may read is decided at
 * execution by RLS and the transaction's settings, as for an unnamed one.
 */
export const MAX_PREPARED_PER_CONNECTION = 32;

interface Prepared {
  /** By name, least recently used first; true: parsed for sure, false: may exist (Close and Parse it again). */
  names: Map<string, boolean>;
  /** Evicted names, to close in the next message. */
  closing: string[];
}

/** What each connection that may prepare holds. */
const preparedOn = new WeakMap<pg.ClientBase, Prepared>();

/** Lets `client` keep named statements (its pool's connect hook). */
export function allowPreparedStatements(client: pg.ClientBase): void {
  preparedOn.set(client, { names: new Map(), closing: [] });
}

const NAMES_KEPT = 256;
const names = new Map<string, string>();

/** The name of `text`: a hash of it, so a name always means the one text. */
function nameOf(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    if (names.size >= NAMES_KEPT) names.delete(names.keys().next().value!);
    name = `tg_${createHash("sha256").update(text).digest("hex").slice(0, 32)}`;
    names.set(text, name);
  }
  return name;
}

/** How a statement is sent on a connection that prepares. */
export interface NamedStatement {
  name: string;
  /** Not known to be prepared on the connection: Close (in case a failed message left it) and Parse it first. */
  parse: boolean;
  /** Names evicted from the connection: Close them first in this message. */
  closes: string[];
  /** After the message: prepared for sure when it succeeded; otherwise it may be (parsed again next time), and the closes are retried. */
  settle(ok: boolean): void;
}

/** `text` as a named statement on `client`; undefined: send it unnamed (the connection does not prepare). */
export function namedStatement(client: pg.ClientBase, text: string): NamedStatement | undefined {
  const prepared = preparedOn.get(client);
  if (!prepared) return undefined;
  const name = nameOf(text);
  const known = prepared.names.get(name);
  prepared.names.delete(name);
  if (known === undefined && prepared.names.size >= MAX_PREPARED_PER_CONNECTION) {
    const oldest = prepared.names.keys().next().value!;
    prepared.names.delete(oldest);
    prepared.closing.push(oldest);
  }
  prepared.names.set(name, known === true);
  const closes = prepared.closing.splice(0);
  return {
    name,
    parse: known !== true,
    closes,
    settle(ok) {
      if (prepared.names.has(name)) prepared.names.set(name, ok);
      if (!ok) prepared.closing.push(...closes);
    },
  };
}
