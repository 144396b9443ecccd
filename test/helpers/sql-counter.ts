import type pg from "pg";

/**
 * Records every statement the app sends to PostgreSQL.
 *
 * Why at the pg.Pool and not at Prisma: Prisma's `$extends` query hooks see
 * model operations, not what reaches the wire (BEGIN, the set_config of the
 * RLS setting, COMMIT, the extra SELECT Prisma issues per relation it loads,
 * raw SQL). Every path of @prisma/adapter-pg, `pool.query()` included, checks
 * a client out of the pool and calls `client.query()`, and pg-pool emits
 * `acquire` for each checkout, so wrapping `query` on each acquired client
 * (once per client) sees every statement of that pool and nothing else:
 * other pools, and other test files in their own processes, are untouched.
 *
 * Counting is on only between `start()` and `stop()`; tests send one request
 * at a time in that window, so everything recorded belongs to that request.
 */
export interface RecordedStatement {
  pool: string;
  sql: string;
  /**
   * The message (client.query call) it was sent in: a read's last statement
   * and its COMMIT share one (src/tenancy/request-commit.ts, `commitWith`);
   * a planned read's opening, statement and COMMIT too (`readInOneMessage`).
   */
  message: number;
}

export interface SqlCounter {
  /** Starts a fresh recording. */
  start(): void;
  /** Stops recording and returns what was recorded since start(). */
  stop(): RecordedStatement[];
  /** Records what `fn` sends (start, fn, stop). */
  record<T>(fn: () => Promise<T>): Promise<{ result: T; statements: RecordedStatement[] }>;
  /** Stops listening to the pools. */
  detach(): void;
}

const wrapped = new WeakSet<object>();
let messages = 0;

function statementText(args: unknown[]): string {
  const first = args[0] as string | { text?: string } | undefined;
  const text = typeof first === "string" ? first : (first?.text ?? "<unknown>");
  return text.replace(/\s+/g, " ").trim();
}

/** `pools`: by the name statements are recorded under (several pools may share one: the tier pools as "app"). */
export function createSqlCounter(pools: Record<string, pg.Pool | pg.Pool[]>): SqlCounter {
  let recording: RecordedStatement[] | null = null;
  const listeners: [pg.Pool, (client: pg.PoolClient) => void][] = [];

  for (const [poolName, pool] of Object.entries(pools).flatMap(([name, p]) => (Array.isArray(p) ? p : [p]).map((one) => [name, one] as const))) {
    const onAcquire = (client: pg.PoolClient) => {
      if (wrapped.has(client)) return;
      wrapped.add(client);
      const original = client.query;
      (client as any).query = function (this: pg.PoolClient, ...args: unknown[]) {
        const message = ++messages;
        // A planned read in one message (src/tenancy/request-commit.ts,
        // `readInOneMessage`) opens with BEGIN, the settings and the facts:
        // recorded as one entry, the text openSession sends them as, in the
        // same message as the statement and its COMMIT.
        const opening = (args[0] as { opening?: readonly (string | { text: string; values: unknown[] })[] } | undefined)?.opening;
        for (const c of activeCounters) {
          // A statement of the opening with bound values: its text, as any statement is recorded.
          const texts = opening?.map((o) => (typeof o === "string" ? o : o.text));
          if (texts?.length) c.push({ pool: poolName, sql: statementText([texts.join("; ")]), message });
          c.push({ pool: poolName, sql: statementText(args), message });
          if ((args[0] as { thenCommit?: boolean } | undefined)?.thenCommit) c.push({ pool: poolName, sql: "COMMIT", message });
        }
        return (original as any).apply(this, args);
      };
    };
    pool.on("acquire", onAcquire);
    listeners.push([pool, onAcquire]);
  }

  // A client wrapped once stays wrapped; what it records goes to every
  // counter currently recording (normally exactly one).
  const sink = { push: (s: RecordedStatement) => recording?.push(s) };

  return {
    start() {
      recording = [];
      activeCounters.add(sink);
    },
    stop() {
      activeCounters.delete(sink);
      const out = recording ?? [];
      recording = null;
      return out;
    },
    async record(fn) {
      this.start();
      try {
        const result = await fn();
        return { result, statements: this.stop() };
      } catch (err) {
        this.stop();
        throw err;
      }
    },
    detach() {
      activeCounters.delete(sink);
      for (const [pool, l] of listeners) pool.removeListener("acquire", l);
    },
  };
}

const activeCounters = new Set<{ push(s: RecordedStatement): void }>();

/** How many messages (client.query calls) carried `statements`. */
export const messagesOf = (statements: RecordedStatement[]) => new Set(statements.map((s) => s.message)).size;

/** Statements of one pool. */
export const ofPool = (statements: RecordedStatement[], pool: string) => statements.filter((s) => s.pool === pool);

/** Counts by kind, for messages and reports. */
export function summarize(statements: RecordedStatement[]) {
  const kind = (sql: string) => {
    const s = sql.toUpperCase();
    if (s === "BEGIN") return "begin";
    if (s === "COMMIT") return "commit";
    if (s === "ROLLBACK") return "rollback";
    if (s.includes("SET_CONFIG(")) return "setConfig";
    return "query";
  };
  const counts: Record<string, number> = { total: statements.length, begin: 0, commit: 0, rollback: 0, setConfig: 0, query: 0 };
  for (const s of statements) {
    // The request transaction opens with "BEGIN; SELECT set_config(...)": one message, both.
    if (/^BEGIN( ISOLATION LEVEL REPEATABLE READ)?;\s*SELECT SET_CONFIG\(/i.test(s.sql)) {
      counts.begin!++;
      counts.setConfig!++;
      continue;
    }
    counts[kind(s.sql)]!++;
  }
  return counts;
}
