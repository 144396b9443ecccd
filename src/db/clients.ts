import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../generated/prisma/client.ts";
import { MAX_REQUEST_SLOTS, RequestSlots, registerRequestSlots } from "./request-slots.ts";

/**
 * The database handles of one process. Neither is the table owner:
 *   - `app` runs as tenantgraph_app: row-level security shows it one tenant;
 *     only the tenant-scoped wrappers in src/tenancy use it.
 *   - `platform` runs as tenantgraph_platform: the explicit cross-tenant
 *     path (platform operations, credential resolution).
 * Each connects with its own URL when one is given (managed databases), else
 * with the migrator's URL and `SET ROLE` at connection start.
 */
export const APP_ROLE = "tenantgraph_app";
export const PLATFORM_ROLE = "tenantgraph_platform";

export interface Databases {
  app: PrismaClient;
  platform: PrismaClient;
  appPool: pg.Pool;
  platformPool: pg.Pool;
  close(): Promise<void>;
}

export function createPool(url: string, role: string | undefined, max: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    // A startup parameter, not a statement: no round-trip, and set before
    // the pool hands the connection to anyone.
    options: role ? `-c role=${role}` : undefined,
  });
  // An idle connection the server closes (a restart, an admin, the embedded
  // PostgreSQL stopping at shutdown) is dropped by the pool; without a
  // listener, pg would raise it as an uncaught 'error' and kill the process.
  pool.on("error", () => {});
  // The same for a connection checked out (a request transaction, a Prisma
  // transaction): the pool's listener covers idle clients only. The holder's
  // query fails on its own, and the holder releases the client with the
  // error, so the pool discards it.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}

export function createDatabases(opts: {
  ownerUrl: string;
  appUrl?: string;
  platformUrl?: string;
  poolSize: number;
}): Databases {
  const appPool = createPool(opts.appUrl ?? opts.ownerUrl, opts.appUrl ? undefined : APP_ROLE, opts.poolSize);
  const platformPool = createPool(
    opts.platformUrl ?? opts.ownerUrl,
    opts.platformUrl ? undefined : PLATFORM_ROLE,
    Math.max(2, Math.ceil(opts.poolSize / 4)),
  );
  const app = new PrismaClient({ adapter: new PrismaPg(appPool) });
  const platform = new PrismaClient({ adapter: new PrismaPg(platformPool) });
  const slots = new RequestSlots(appPool, Math.min(opts.poolSize, MAX_REQUEST_SLOTS));
  registerRequestSlots(app, slots);
  return {
    app,
    platform,
    appPool,
    platformPool,
    async close() {
      await Promise.allSettled([app.$disconnect(), platform.$disconnect(), slots.close()]);
      await Promise.allSettled([appPool.end(), platformPool.end()]);
    },
  };
}
