import pg from "pg";
import type { NamedStatement } from "../db/prepared-statements.ts";

/**
 * A statement and the COMMIT of its read transaction in one write, one Sync
 * (extended protocol: Parse/Bind/Describe/Execute of the statement, then
 * Parse/Bind/Execute of COMMIT): one message to PostgreSQL instead of two,
 * for the last statement of a read (docs/request-path.md, "The last
 * statement"). Values are bound parameters, as in any `client.query`.
 * Should the statement fail, PostgreSQL skips the COMMIT up to the Sync and
 * the transaction stays open, aborted: `commitWith` then rolls it back.
 *
 * `opening`: statements sent before it in the same message, each with its
 * own Parse/Bind/Describe/Execute and no values (BEGIN, the settings, the
 * facts: `readInOneMessage`). A failed one makes PostgreSQL skip everything
 * after it, the statement included, up to the Sync.
 *
 * It overrides pg's internals (pg 8.23, lib/query.js: `prepare`, `_getRows`,
 * `_results`), pinned at an exact version in package.json: re-verify them
 * on any pg upgrade. The test helper counts statements from `opening`, not
 * from the wire; what shows they are really sent in the message is
 * PostgreSQL's side (sql-plans-one-message.test.ts: the planned statement
 * waits on a lock in pg_stat_activity inside it, the gate set by the facts
 * statement decides whether it does any work).
 */
export class StatementThenCommit extends pg.Query {
  /** For whoever counts statements (test/helpers/sql-counter.ts): a COMMIT follows. */
  readonly thenCommit = true;

  constructor(
    text: string,
    values: unknown[],
    callback: (err: Error | undefined, results: unknown) => void,
    /** For whoever counts statements too: what the message opens with. */
    readonly opening: readonly OpeningStatement[] = [],
    /** The statement by name (src/db/prepared-statements.ts); undefined: unnamed, parsed every time. */
    readonly named?: NamedStatement,
  ) {
    // Extended even without values: the COMMIT must follow under the same Sync.
    super({ text, values, queryMode: "extended", name: named?.name } as pg.QueryConfig, callback as never);
  }

  /**
   * Whether pg's `prepare` may skip the Parse (pg 8.23, lib/query.js): what
   * prepared-statements.ts knows of the connection, not pg's own record,
   * which the opening's Parses would mark too (pg marks a name on any
   * ParseComplete while the query is active).
   */
  hasBeenParsed(): boolean {
    return !!this.named && !this.named.parse;
  }

  /** pg's Query sends Parse/Bind/Describe of the statement here (pg 8.23, lib/query.js): the opening goes before. */
  prepare(connection: PgConnection) {
    const named = [...this.opening.map((o) => (typeof o === "string" ? undefined : o.named)), this.named];
    for (const name of named.flatMap((n) => n?.closes ?? [])) connection.close({ type: "S", name });
    for (const statement of this.opening) {
      const { text, values = [], named } = typeof statement === "string" ? { text: statement } : statement;
      if (!named || named.parse) parseNamed(connection, text, named);
      connection.bind({ statement: named?.name ?? "", values });
      connection.describe({ type: "P", name: "" });
      connection.execute({ portal: "" });
    }
    if (this.named?.parse) connection.close({ type: "S", name: this.named.name });
    (pg.Query.prototype as unknown as { prepare(c: PgConnection): void }).prepare.call(this, connection);
  }

  /** pg's Query sends Execute then Sync here (pg 8.23, lib/query.js): the COMMIT goes in between. */
  _getRows(connection: PgConnection, rows?: number) {
    connection.execute({ portal: "", rows });
    connection.parse({ text: "COMMIT" });
    connection.bind({});
    connection.execute({});
    connection.sync();
  }

  /** The results PostgreSQL completed, in order (a failed statement's and those after it are not among them). */
  completed(): pg.QueryResult[] {
    const results = (this as unknown as { _results: pg.QueryResult | pg.QueryResult[] })._results;
    return (Array.isArray(results) ? results : [results]).filter((r) => !!r.command);
  }
}

/** A statement of the message's opening: its text alone (no values, unnamed), or bound values and a name. */
export type OpeningStatement = string | { text: string; values: (string | null)[]; named?: NamedStatement };

/**
 * Parse of `text`, by name when `named`: a name not known to be there may
 * still be (a failed message that parsed it), so Close goes first, which
 * PostgreSQL allows on a missing name.
 */
function parseNamed(connection: PgConnection, text: string, named: NamedStatement | undefined) {
  if (named) connection.close({ type: "S", name: named.name });
  connection.parse({ text, name: named?.name });
}

/** What of pg's connection a Query writes with (pg 8.23, lib/connection.js). */
interface PgConnection {
  parse(c: object): void;
  bind(c: object): void;
  describe(c: object): void;
  execute(c: object): void;
  close(c: object): void;
  sync(): void;
}
