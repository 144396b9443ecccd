import pg from "pg";
import type { Placement } from "../generated/prisma/enums.ts";
import { runMigrations, type MigrationResult } from "./migrate.ts";

/**
 * Where a tenant's rows live, and the owner-side work on placements:
 * creating one (schema or database, then every migration in it), dropping
 * one, migrating them all (docs/placement.md).
 *
 *   POOLED    the shared tables of the main database (the default)
 *   SCHEMA    schema `tenant_<id hex>` in the main database
 *   DATABASE  database `tg_tenant_<id hex>` on the main server (`default`) or
 *             on a server named in PLACEMENT_DATABASE_URLS
 *
 * Names are derived from the tenant id, never from input, and checked
 * before they reach SQL.
 */

export interface PlacementRef {
  placement: Placement;
  /** DATABASE: the server name (`default` = the main server); null otherwise. */
  server: string | null;
  /** SCHEMA: the schema; DATABASE: the database; null for POOLED. */
  name: string | null;
}

/** A placement whose migrations failed (migrateAll goes on with the others). */
export interface MigrationFailure {
  placement: string;
  error: string;
}

export const POOLED: PlacementRef = Object.freeze({ placement: "POOLED", server: null, name: null });
export const DEFAULT_SERVER = "default";

const SCHEMA_RE = /^tenant_[0-9a-f]{32}$/;
const DATABASE_RE = /^tg_tenant_[0-9a-f]{32}$/;
const SERVER_RE = /^[a-z][a-z0-9_-]{0,39}$/;

const hex = (tenantId: string) => {
  const h = tenantId.replace(/-/g, "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(h)) throw new Error("invalid tenant id");
  return h;
};

/** The placement a tenant gets for `placement` (on `server`, for DATABASE). */
export function placementFor(tenantId: string, placement: Placement, server?: string | null): PlacementRef {
  if (placement === "POOLED") return POOLED;
  if (placement === "SCHEMA") return { placement, server: null, name: `tenant_${hex(tenantId)}` };
  return { placement, server: server ?? DEFAULT_SERVER, name: `tg_tenant_${hex(tenantId)}` };
}

/** A placement as stored in the directory row (tenants.placement, placement_server, placement_name). */
export function placementOf(row: { placement: Placement; placementServer?: string | null; placementName?: string | null }): PlacementRef {
  if (row.placement === "POOLED") return POOLED;
  const ref = { placement: row.placement, server: row.placementServer ?? null, name: row.placementName ?? null };
  checkRef(ref);
  return ref;
}

/** Throws unless `ref` is the placement a tenant with this id would have (its name is derived from the id). */
export function assertPlacementOf(tenantId: string, ref: PlacementRef): void {
  checkRef(ref);
  if (ref.placement === "POOLED") return;
  if (ref.name !== placementFor(tenantId, ref.placement, ref.server).name) throw new Error("placement does not belong to the tenant");
}

function checkRef(ref: PlacementRef): void {
  const ok =
    ref.placement === "POOLED"
      ? ref.name === null
      : ref.placement === "SCHEMA"
        ? SCHEMA_RE.test(ref.name ?? "")
        : DATABASE_RE.test(ref.name ?? "") && SERVER_RE.test(ref.server ?? "");
  if (!ok) throw new Error(`invalid placement ${ref.placement} ${ref.server ?? ""}/${ref.name ?? ""}`);
}

/** A stable key of a placement (pools, caches, logs). */
export const placementKey = (ref: PlacementRef) =>
  ref.placement === "POOLED" ? "pooled" : ref.placement === "SCHEMA" ? `schema:${ref.name}` : `database:${ref.server}/${ref.name}`;

export const withDatabase = (url: string, database: string) => {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
};

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  // A server that does not answer (down, unreachable) fails the step in 10 s, not the kernel's minutes.
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Owner-side placement work, with the migrator's URL (the main database) and the configured servers. */
export class PlacementAdmin {
  constructor(
    /** The owner URL of the main database. */
    readonly ownerUrl: string,
    /** Other servers by name (PLACEMENT_DATABASE_URLS); `default` is the main one. */
    readonly servers: Readonly<Record<string, string>> = {},
  ) {}

  private readonly ownerPools = new Map<string, pg.Pool>();

  /**
   * An owner connection to the database of a placement (row copies between
   * placements), from a small pool per database; release it after use.
   */
  async ownerClient(ref: PlacementRef, side: "directory" | "placement" = "placement"): Promise<pg.PoolClient> {
    const url = this.databaseUrl(ref);
    // A copy holds a connection of each side at once (the main database's
    // directory rows and the placement's): the two sides never share a pool,
    // or two copies could each hold one side and wait for the other forever
    // (a SCHEMA placement has the main database's URL). And nobody waits
    // for a connection without end.
    const key = `${side}|${url}`;
    let pool = this.ownerPools.get(key);
    if (!pool) {
      pool = new pg.Pool({ connectionString: url, max: 2, idleTimeoutMillis: 10_000, connectionTimeoutMillis: 10_000 });
      pool.on("error", () => {});
      pool.on("connect", (c) => c.on("error", () => {}));
      this.ownerPools.set(key, pool);
    }
    return pool.connect();
  }

  /** Closes the owner pools (and, with `ref`, only that placement's, before it is dropped). */
  async closeOwnerPools(ref?: PlacementRef): Promise<void> {
    for (const [key, pool] of this.ownerPools) {
      if (ref && key.slice(key.indexOf("|") + 1) !== this.databaseUrl(ref)) continue;
      if (ref && ref.placement !== "DATABASE") continue;
      this.ownerPools.delete(key);
      await pool.end().catch(() => {});
    }
  }

  /** Whether DATABASE placements may go to this server. */
  hasServer(server: string): boolean {
    return server === DEFAULT_SERVER || Object.hasOwn(this.servers, server);
  }

  /** The owner URL of the database that holds the placement (the main one for POOLED and SCHEMA). */
  databaseUrl(ref: PlacementRef): string {
    checkRef(ref);
    if (ref.placement !== "DATABASE") return this.ownerUrl;
    return withDatabase(this.serverUrl(ref.server!), ref.name!);
  }

  private serverUrl(server: string): string {
    if (server === DEFAULT_SERVER) return this.ownerUrl;
    const url = this.servers[server];
    if (!url) throw new Error(`no placement server named ${server}`);
    return url;
  }

  /** Creates the schema or database and runs every migration in it. Throws if it exists already. */
  async create(ref: PlacementRef): Promise<MigrationResult> {
    checkRef(ref);
    if (ref.placement === "POOLED") return { applied: [], skipped: [] };
    if (ref.placement === "SCHEMA") {
      await withClient(this.ownerUrl, (c) => c.query(`CREATE SCHEMA "${ref.name}"`));
    } else {
      await withClient(this.serverUrl(ref.server!), (c) => c.query(`CREATE DATABASE "${ref.name}"`));
    }
    return this.migrate(ref);
  }

  /** Runs the pending migrations of one placement. */
  migrate(ref: PlacementRef, options: { log?: (line: string) => void; dir?: string } = {}): Promise<MigrationResult> {
    checkRef(ref);
    if (ref.placement === "SCHEMA") return runMigrations(this.ownerUrl, { ...options, schema: ref.name! });
    return runMigrations(this.databaseUrl(ref), options);
  }

  /** Removes a placement and everything in it (a failed provisioning, the old copy after a move). */
  async drop(ref: PlacementRef): Promise<void> {
    checkRef(ref);
    await this.closeOwnerPools(ref);
    if (ref.placement === "SCHEMA") {
      await withClient(this.ownerUrl, (c) => c.query(`DROP SCHEMA IF EXISTS "${ref.name}" CASCADE`));
    } else if (ref.placement === "DATABASE") {
      await withClient(this.serverUrl(ref.server!), (c) => c.query(`DROP DATABASE IF EXISTS "${ref.name}" WITH (FORCE)`));
    }
  }

  /** Whether the schema or database exists. */
  async exists(ref: PlacementRef): Promise<boolean> {
    checkRef(ref);
    if (ref.placement === "POOLED") return true;
    const [sql, url] =
      ref.placement === "SCHEMA"
        ? ["SELECT 1 FROM pg_namespace WHERE nspname = $1", this.ownerUrl]
        : ["SELECT 1 FROM pg_database WHERE datname = $1", this.serverUrl(ref.server!)];
    return withClient(url, async (c) => (await c.query(sql, [ref.name])).rowCount === 1);
  }

  /**
   * npm run db:migrate: the main database first, then every placement the
   * directory names (tenants.placement), one after the other. A placement
   * that fails does not stop the others: every failure is logged and
   * answered in `failures` (the caller exits non-zero). A failure of the
   * main database throws: its migrations come first.
   */
  async migrateAll(log: (line: string) => void = () => {}, dir?: string): Promise<{ main: MigrationResult; placements: number; failures: MigrationFailure[] }> {
    const main = await runMigrations(this.ownerUrl, { log, dir });
    const refs = await withClient(this.ownerUrl, async (c) =>
      (
        await c.query<{ placement: Placement; placement_server: string | null; placement_name: string | null }>(
          `SELECT placement, placement_server, placement_name FROM tenants WHERE placement <> 'POOLED' ORDER BY id`,
        )
      ).rows.map((r) => placementOf({ placement: r.placement, placementServer: r.placement_server, placementName: r.placement_name })),
    );
    const failures: MigrationFailure[] = [];
    for (const ref of refs) {
      try {
        const { applied } = await this.migrate(ref, { dir });
        log(`placement ${placementKey(ref)}: ${applied.length} applied`);
      } catch (err) {
        failures.push({ placement: placementKey(ref), error: err instanceof Error ? err.message : String(err) });
        log(`placement ${placementKey(ref)}: FAILED: ${failures.at(-1)!.error}`);
      }
    }
    return { main, placements: refs.length, failures };
  }
}
