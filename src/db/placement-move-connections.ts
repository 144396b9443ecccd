import pg from "pg";
import { POOLED, type PlacementAdmin, type PlacementRef } from "./placement-admin.ts";
import { ROUTE_SQL, routeOf } from "./placement-route.ts";

/** A move's own connections to the databases it reads and writes, and its reads of the main database's directory row. */

/**
 * A connection of the move's own (the fence, the snapshot, the copy and the
 * switch may all be on one database at once: never the owner pool's two).
 */
export async function connect(admin: PlacementAdmin, ref: PlacementRef): Promise<pg.Client> {
  // TCP keepalive: a mover host gone without a reset is noticed in a minute, not after the kernel's two hours (its fence then released).
  const client = new pg.Client({ connectionString: admin.databaseUrl(ref), keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
  client.on("error", () => {});
  await client.connect();
  return client;
}

export async function release(client: pg.Client | undefined) {
  await client?.end().catch(() => {});
}

/** The route the main database's directory row of the tenant names (undefined: no such tenant). */
export async function routeIn(main: pg.Client, tenantId: string): Promise<string | undefined> {
  return (await main.query<{ route: string }>(`SELECT ${ROUTE_SQL} AS route FROM tenants WHERE id = $1`, [tenantId])).rows[0]?.route;
}

/** One statement on the main database as its owner, on a connection of its own. */
export async function onMain(admin: PlacementAdmin, sql: string): Promise<void> {
  const c = await connect(admin, POOLED);
  try {
    await c.query(sql);
  } finally {
    await release(c);
  }
}

/** Whether the main database's directory row of the tenant names `ref`. */
export async function directoryNames(admin: PlacementAdmin, tenantId: string, ref: PlacementRef): Promise<boolean> {
  const main = await connect(admin, POOLED);
  try {
    const [row] = (await main.query<{ route: string }>(`SELECT ${ROUTE_SQL} AS route FROM tenants WHERE id = $1`, [tenantId])).rows;
    return row?.route === routeOf(ref);
  } finally {
    await release(main);
  }
}

/** A read transaction on a placement (RLS sees the tenant; a SCHEMA alone on the path), on the exported snapshot `snapshot` if given. */
const SNAPSHOT_ID = /^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$/i;
export async function openRead(admin: PlacementAdmin, ref: PlacementRef, tenantId: string, snapshot: string | null = null): Promise<pg.Client> {
  if (snapshot !== null && !SNAPSHOT_ID.test(snapshot)) throw new Error("unexpected snapshot id");
  const c = await connect(admin, ref);
  try {
    await c.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY${snapshot ? `; SET TRANSACTION SNAPSHOT '${snapshot}'` : ""}`);
    await c.query(`SELECT set_config('app.tenant_id', $1, true)${ref.placement === "SCHEMA" ? `, set_config('search_path', '"${ref.name}"', true)` : ""}`, [tenantId]);
    return c;
  } catch (err) {
    await release(c);
    throw err;
  }
}
