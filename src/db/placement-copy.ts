import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import type { PlacementAdmin, PlacementRef } from "./placement-admin.ts";
import { connect, openRead, release } from "./placement-move-connections.ts";
import { beginCopy, checkedId, pgQuery, recountStats, tablesOf, tenantRowsWhere, type TenantTable } from "./placement-rows.ts";

/**
 * The bulk of a move (docs/placement.md, "Moving a tenant"): the tenant's
 * rows of every table streamed with `COPY (SELECT ...) TO STDOUT` from the
 * source into `COPY ... FROM STDIN` at the target, several tables at once.
 *
 * Every source connection reads the same snapshot (`pg_export_snapshot()`
 * of the move's snapshot transaction, imported with `SET TRANSACTION
 * SNAPSHOT`), so the tables copied in parallel are one consistent state of
 * the tenant. The target side runs with `session_replication_role =
 * replica`: foreign keys and triggers do not fire, so the tables need no
 * order (the copy is of a snapshot whose keys hold; the move verifies each
 * table's count and checksum against that snapshot afterwards).
 */

export interface ParallelCopy {
  tenantId: string;
  /** The tables to copy, the largest first (they are handed out in this order). */
  tables: readonly TenantTable[];
  /** How many tables are copied at once (one source and one target connection each). */
  workers: number;
  /** A source connection whose transaction reads the exported snapshot. */
  source: () => Promise<pg.Client>;
  /** A target connection in its copy transaction (committed by the worker once its tables are in). */
  target: () => Promise<pg.Client>;
  /** Where the rows of `table` go (a quoted name), and whether rows already there are kept (identities: `users`). */
  into: (table: TenantTable) => { name: string; keep: boolean };
}

/** The copy's statements take the tenant id as a literal (COPY takes no parameters); it is checked to be a UUID. */
const rowsOf = (table: TenantTable, tenantId: string) => tenantRowsWhere(table).replaceAll("$1", `'${checkedId(tenantId)}'`);

/** The table's columns (quoted) as the connection's search path finds it (every placement runs the same migrations), generated ones aside. */
export async function columnsOf(client: pg.Client, table: TenantTable): Promise<string[]> {
  const { rows } = await client.query<{ col: string }>(
    `SELECT quote_ident(attname) AS col FROM pg_attribute
      WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
    [table],
  );
  if (rows.length === 0) throw new Error(`no table ${table} found`);
  return rows.map((r) => r.col);
}

/** One table: source COPY piped into target COPY; answers the rows copied. */
async function copyTable(source: pg.Client, target: pg.Client, table: TenantTable, plan: ParallelCopy): Promise<number> {
  const cols = (await columnsOf(source, table)).join(", ");
  const { name, keep } = plan.into(table);
  // Rows that may be there already (a global identity) go through a temporary table and are inserted unless present.
  const dest = keep ? `"move_${table}"` : name;
  if (keep) await target.query(`CREATE TEMP TABLE ${dest} (LIKE ${name}) ON COMMIT DROP`);
  const out = source.query(copyTo(`COPY (SELECT ${cols} FROM "${table}" x WHERE ${rowsOf(table, plan.tenantId)}) TO STDOUT`));
  const into = target.query(copyFrom(`COPY ${dest} (${cols}) FROM STDIN`));
  await pipeline(out, into);
  if (keep) await target.query(`INSERT INTO ${name} (${cols}) SELECT ${cols} FROM ${dest} ON CONFLICT DO NOTHING`);
  return into.rowCount;
}

/**
 * Runs `each` over `items`, `workers` at a time: each worker takes the next
 * item until none is left, on connections of its own (`open`; `finish` runs
 * on them once its items are done; they are ended in any case). Throws the
 * first failure, once every worker has stopped (after its current item).
 */
export async function inParallel<T>(
  items: readonly T[],
  workers: number,
  open: () => Promise<pg.Client[]>,
  each: (clients: pg.Client[], item: T) => Promise<void>,
  finish: (clients: pg.Client[]) => Promise<void> = async () => {},
): Promise<void> {
  const queue = [...items];
  const opened: pg.Client[] = [];
  let failed = false;
  const worker = async () => {
    try {
      const clients = await open();
      opened.push(...clients);
      for (let item = queue.shift(); item !== undefined && !failed; item = queue.shift()) await each(clients, item);
      if (!failed) await finish(clients);
    } catch (err) {
      failed = true;
      throw err;
    }
  };
  try {
    const results = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(workers, items.length)) }, worker));
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (rejected) throw rejected.reason;
  } finally {
    for (const c of opened) await c.end().catch(() => {});
  }
}

/** Copies every table of the plan, `workers` at a time; answers the rows copied. Throws on the first failure (the caller discards the target). */
export async function copyInParallel(plan: ParallelCopy): Promise<number> {
  let rows = 0;
  await inParallel(
    plan.tables,
    plan.workers,
    // The target connection first: a worker holding a snapshot import waits for nothing else.
    async () => {
      const target = await plan.target();
      try {
        return [await plan.source(), target];
      } catch (err) {
        await target.end().catch(() => {});
        throw err;
      }
    },
    async ([source, target], table) => {
      const n = await copyTable(source!, target!, table, plan);
      rows += n;
    },
    async ([source, target]) => {
      await target!.query("COMMIT");
      await source!.query("COMMIT");
    },
  );
  return rows;
}

/**
 * Step 3: every table copied with COPY from the snapshot `snapshot` of the
 * source, several at once (copyInParallel above). Into a SCHEMA or
 * DATABASE target the rows go straight in; its tenants row, copied as it
 * is, names the SOURCE until the switch, so a request a stale directory
 * entry routes to the target (one naming it from an earlier stay of the
 * tenant there) is refused by the route check, reads and writes alike:
 * nothing is acknowledged in a copy that may still be dropped, nothing
 * races the verification. The switch names the target (step 5). Into the
 * main database (to POOLED) they go to the move's staging schema, and the
 * switch moves them into the shared tables. Answers the rows copied.
 */
export async function copyTenant(admin: PlacementAdmin, tenantId: string, from: PlacementRef, to: PlacementRef, staging: string | null, snapshot: string, workers: number): Promise<number> {
  const targetSchema = to.placement === "SCHEMA" ? to.name : null;
  const rows = await copyInParallel({
    tenantId,
    tables: tablesOf(to),
    workers,
    source: () => openRead(admin, from, tenantId, snapshot),
    target: async () => {
      const c = await connect(admin, to);
      await beginCopy(c, tenantId, targetSchema).catch(async (err: unknown) => {
        await release(c);
        throw err;
      });
      return c;
    },
    into: (t) => (staging ? { name: `"${staging}"."${t}"`, keep: false } : { name: `"${t}"`, keep: t === "users" }),
  });
  if (!staging) {
    const target = await connect(admin, to);
    try {
      await beginCopy(target, tenantId, targetSchema);
      // The analytics counters: recounted from the copy (never copied; the copy fires no trigger).
      await recountStats(pgQuery(target), tenantId);
      await target.query("COMMIT");
    } finally {
      await release(target);
    }
  }
  return rows;
}
