import { Prisma } from "../generated/prisma/client.ts";
import { forbidden, notFound, tenantMoving } from "../errors.ts";
import type { Logger } from "../infra/logger.ts";
import { writeAudit } from "../policy/audit.ts";
import { crossTenantReader, exportedTenant } from "../policy/platform.ts";
import { POOLED } from "../db/placement-admin.ts";
import { routeOf } from "../db/placement-route.ts";
import { syncPlacedTenant } from "../modules/platform/placement.service.ts";
import { refuseWhileMoving } from "../tenancy/placement-directory.ts";
import { assertTenantRole, requirePlatformAdmin, requireRole } from "../policy/roles.ts";
import type { Context } from "../tenancy/context.ts";
import type { TenantInfo } from "../tenancy/directory.ts";

/**
 * GET /export: every row the tenant owns as NDJSON, one object a line with a
 * `type` field, ending with `{"type":"ExportComplete","rows":N}` so a reader
 * can tell a complete export from a cut-off one.
 *
 * Who: the tenant's OWNER (credentials and tenant resolved by the same
 * buildContext as GraphQL; API keys are never OWNER), or a platform admin
 * with `?tenant=<slug>` (any status, so PENDING_DELETION tenants can still
 * be exported), audited as a cross-tenant access the tenant itself sees.
 *
 * Memory stays constant: each table is read in keyset batches (`batchSize`
 * rows, by primary key) on demand, as the client consumes the stream (a pull
 * stream with one batch of look-ahead). The owner path reads through the
 * tenant-scoped role (RLS + explicit tenant_id), one short transaction per
 * batch, so a slow client never holds a pooled connection; the export is
 * therefore not one snapshot: rows written while it runs may or may not
 * appear.
 */

export const NDJSON = "application/x-ndjson";

type Runner = <T>(sql: Prisma.Sql) => Promise<T[]>;
type Row = { k: string; k2?: Date | null; row: Record<string, unknown> };

interface Section {
  type: string;
  /** Rows after the keyset position (undefined at the start), at most `limit`. */
  fetch(run: Runner, tenantId: string, after: Row | undefined, limit: number): Promise<Row[]>;
}

/** Tables keyed (tenant_id, id): keyset on id. `extra` adds joined columns; `drop` removes secrets. */
function byId(type: string, table: string, opts: { drop?: string[]; join?: Prisma.Sql; extra?: Prisma.Sql } = {}): Section {
  const drop = opts.drop?.length ? Prisma.sql` - ${opts.drop}::text[]` : Prisma.empty;
  return {
    type,
    fetch: (run, tenantId, after, limit) =>
      // The keyset page is cut first (primary key index), and only its rows are turned into JSON.
      run<Row>(Prisma.sql`
        SELECT x.id::text AS k, (to_jsonb(x)${drop})${opts.extra ?? Prisma.empty} AS row
        FROM (
          SELECT * FROM ${Prisma.raw(table)} y
          WHERE y.tenant_id = ${tenantId}::uuid ${after ? Prisma.sql`AND y.id > ${after.k}::uuid` : Prisma.empty}
          ORDER BY y.id
          LIMIT ${limit}
        ) x ${opts.join ?? Prisma.empty}
        ORDER BY x.id`),
  };
}

const SECTIONS: Section[] = [
  {
    type: "Tenant",
    fetch: (run, tenantId, after) =>
      after
        ? Promise.resolve([])
        : run<Row>(Prisma.sql`SELECT t.id::text AS k, to_jsonb(t) AS row FROM tenants t WHERE t.id = ${tenantId}::uuid`),
  },
  {
    type: "TenantLimitOverride",
    fetch: (run, tenantId, after, limit) =>
      run<Row>(Prisma.sql`
        SELECT x.resource::text AS k, to_jsonb(x) AS row FROM tenant_limit_overrides x
        WHERE x.tenant_id = ${tenantId}::uuid ${after ? Prisma.sql`AND x.resource > ${after.k}::"QuotaResource"` : Prisma.empty}
        ORDER BY x.resource LIMIT ${limit}`),
  },
  byId("Membership", "memberships", {
    join: Prisma.sql`JOIN users u ON u.id = x.user_id`,
    extra: Prisma.sql` || jsonb_build_object('user_email', u.email, 'user_name', u.name)`,
  }),
  byId("Project", "projects"),
  byId("Deployment", "deployments"),
  byId("Workflow", "workflows"),
  // The secret hashes never leave the database.
  byId("ApiKey", "api_keys", { drop: ["secret_hash", "previous_secret_hash"] }),
  byId("AuditLogEntry", "audit_log"),
  {
    type: "UsageCounter",
    fetch: (run, tenantId, after, limit) =>
      run<Row>(Prisma.sql`
        SELECT x.resource::text AS k, x.window_start AS k2, to_jsonb(x) AS row FROM usage_counters x
        WHERE x.tenant_id = ${tenantId}::uuid
          ${after ? Prisma.sql`AND (x.resource, x.window_start) > (${after.k}::"QuotaResource", ${after.k2}::timestamptz)` : Prisma.empty}
        ORDER BY x.resource, x.window_start LIMIT ${limit}`),
  },
];

const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function line(type: string, row: Record<string, unknown>): string {
  const out: Record<string, unknown> = { type };
  for (const [k, v] of Object.entries(row)) out[camel(k)] = v;
  return JSON.stringify(out) + "\n";
}

/** The NDJSON stream of one tenant: pulls the next batch only when the reader wants more. */
export function exportStream(run: Runner, tenantId: string, batchSize = 1000, logger?: Logger): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let section = 0;
  let after: Row | undefined;
  let rows = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          while (section < SECTIONS.length) {
            const s = SECTIONS[section]!;
            const batch = await s.fetch(run, tenantId, after, batchSize);
            if (batch.length < batchSize) {
              section++;
              after = undefined;
            } else {
              after = batch[batch.length - 1];
            }
            if (batch.length) {
              rows += batch.length;
              controller.enqueue(encoder.encode(batch.map((r) => line(s.type, r.row)).join("")));
              return;
            }
          }
          controller.enqueue(encoder.encode(JSON.stringify({ type: "ExportComplete", rows }) + "\n"));
          controller.close();
        } catch (err) {
          logger?.error({ err, tenantId }, "export failed");
          controller.error(new Error("export failed"));
        }
      },
    },
    { highWaterMark: 1 },
  );
}

const NOT_OWNER = "Only the tenant's OWNER can export its data";
const notAdmin = () => forbidden("Platform admins only", { requires: "PLATFORM_ADMIN" });

/**
 * Checks who may export which tenant, writes the audit entry, and picks the
 * database path. An export can outlast many requests, so the right to it is
 * confirmed in PostgreSQL again before every batch (docs/revocation.md): a
 * caller demoted, removed or suspended mid-stream gets a cut-off export (no
 * ExportComplete line).
 */
export async function authorizeExport(ctx: Context, url: URL): Promise<{ tenant: TenantInfo; run: Runner }> {
  // A move of the tenant mid-stream (docs/placement.md, "Moving a tenant")
  // empties the copy being read: each batch is followed by a look at the
  // route, and a changed one cuts the export off (no ExportComplete line)
  // rather than ending it with rows missing.
  const sameRoute = (tenant: TenantInfo, now: string | null | undefined) => {
    if (now !== undefined && now !== routeOf(tenant.placement ?? POOLED)) throw tenantMoving();
  };
  const slug = url.searchParams.get("tenant");
  if (slug !== null) {
    requirePlatformAdmin(ctx);
    const tenant = await exportedTenant(ctx, slug);
    if (!tenant) throw notFound("Tenant");
    // Audited before any row is read; the tenant sees the entry in its own
    // log: a placed tenant's is in its placement, copied there before the
    // entry commits, like a platform change's (docs/placement.md). Its rows
    // are then read where they live.
    const reader = await crossTenantReader(ctx, { action: "tenant.export", tenantIds: [tenant.id], metadata: { tenant: tenant.slug } }, tenant.placement, async (tx, placements) => {
      const row = await tx.tenant.findUniqueOrThrow({ where: { id: tenant.id }, select: { id: true, placement: true, placementServer: true, placementName: true } });
      if (row.placement === "POOLED") return;
      await refuseWhileMoving(tx, tenant.id);
      await syncPlacedTenant(placements, tx, row);
    });
    const userId = ctx.user!.id;
    return {
      tenant,
      run: async <T>(sql: Prisma.Sql) => {
        if ((await ctx.directory.platformAdminFlag(userId)) !== true) throw notAdmin();
        const rows = await reader.queryRaw<T>(sql);
        sameRoute(tenant, await reader.route());
        return rows;
      },
    };
  }
  assertTenantRole(ctx, "OWNER", NOT_OWNER);
  const { tenant, tenantDb } = ctx;
  await tenantDb.transaction((tx) => writeAudit(tx, ctx, { action: "tenant.export", targetType: "Tenant", targetId: tenant.id }));
  // The rows are read after the request's transaction (with the audit
  // entry) has committed, one short transaction per batch.
  const stream = tenantDb.statements();
  return {
    tenant,
    run: async <T>(sql: Prisma.Sql) => {
      const facts = await stream.authorize();
      if (facts.tenant?.status !== "ACTIVE") throw forbidden(NOT_OWNER, { requires: "OWNER" });
      requireRole(facts.member?.role, "OWNER", NOT_OWNER);
      sameRoute(tenant, facts.route);
      const rows = await stream.queryRaw<T>(sql);
      sameRoute(tenant, (await stream.authorize()).route);
      return rows;
    },
  };
}
