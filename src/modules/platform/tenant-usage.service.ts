import { resolveCursorConnection } from "@pothos/plugin-relay";
import { Prisma } from "../../generated/prisma/client.ts";
import type { DeploymentStatus, Plan, TenantStatus } from "../../generated/prisma/enums.ts";
import { badInput } from "../../errors.ts";
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from "../../graphql/pagination.ts";
import type { CursorCodec } from "../../infra/cursor.ts";
import { REQUEST_RESOURCE } from "../../infra/request-counter.ts";
import type { PlatformTx } from "../../policy/platform.ts";
import { checkRange, isRanged, rangeOf, type Range } from "./analytics-range.ts";
import { NO_PLACED_COUNTS, placedCte, type PlacedCounts } from "./placement-analytics.ts";

/**
 * Platform.tenantUsage: per-tenant usage, one page, ONE statement over the
 * tenants' counters (docs/placement.md, "Platform analytics"), run on the
 * platform client inside crossTenant() (src/policy/platform.ts), never a loop over tenants.
 */

const DEPLOYMENT_STATUSES: DeploymentStatus[] = ["QUEUED", "BUILDING", "READY", "ERROR", "CANCELED"];

export interface TenantRow {
  id: string;
  slug: string;
  name: string;
  plan: Plan;
  status: TenantStatus;
  region: string;
  createdAt: Date;
  /** Per-tenant configuration (docs/tenant-config.md), so Tenant.features/domain answer right. */
  featureOverrides?: unknown;
  domain?: string | null;
  storageBytes?: number;
}

export interface TenantUsageStats {
  tenant: TenantRow;
  members: number;
  projects: number;
  deployments: number;
  deploymentsByStatus: { status: DeploymentStatus; count: number }[];
  workflows: number;
  apiRequests: number;
}

export type UsageOrderField = "CREATED_AT" | "MEMBERS" | "PROJECTS" | "DEPLOYMENTS" | "WORKFLOWS" | "API_REQUESTS";
export interface UsageOrder {
  field: UsageOrderField;
  direction: "ASC" | "DESC";
}

const ORDER_COLUMN: Record<UsageOrderField, string> = {
  CREATED_AT: "created_at",
  MEMBERS: "members",
  PROJECTS: "projects",
  DEPLOYMENTS: "deployments",
  WORKFLOWS: "workflows",
  API_REQUESTS: "api_requests",
};

function byStatus(counts: Record<string, number> | null): { status: DeploymentStatus; count: number }[] {
  return DEPLOYMENT_STATUSES.map((status) => ({ status, count: Number(counts?.[status] ?? 0) }));
}

interface UsageRow {
  id: string;
  slug: string;
  name: string;
  plan: Plan;
  status: TenantStatus;
  region: string;
  created_at: Date;
  feature_overrides: unknown;
  domain: string | null;
  storage_bytes: number;
  members: number;
  projects: number;
  deployments: number;
  by_status: Record<string, number> | null;
  workflows: number;
  api_requests: bigint | number;
  total: number;
}

/** TenantUsageStats's value for the sort: what its cursors carry. */
const SORT_VALUE: Record<UsageOrderField, (s: TenantUsageStats) => string> = {
  CREATED_AT: (s) => s.tenant.createdAt.toISOString(),
  MEMBERS: (s) => String(s.members),
  PROJECTS: (s) => String(s.projects),
  DEPLOYMENTS: (s) => String(s.deployments),
  WORKFLOWS: (s) => String(s.workflows),
  API_REQUESTS: (s) => String(s.apiRequests),
};

const usageStats = (r: UsageRow): TenantUsageStats => ({
  tenant: {
    id: r.id,
    slug: r.slug,
    name: r.name,
    plan: r.plan,
    status: r.status,
    region: r.region,
    createdAt: r.created_at,
    featureOverrides: r.feature_overrides,
    domain: r.domain,
    storageBytes: Number(r.storage_bytes),
  },
  members: r.members,
  projects: r.projects,
  deployments: r.deployments,
  deploymentsByStatus: byStatus(r.by_status),
  workflows: r.workflows,
  apiRequests: Number(r.api_requests),
});

/**
 * The counter columns a sort can use (`st`: tenant_stats, `rq`:
 * tenant_request_totals), each indexed with its table's tenant_id, and their
 * SQL type (for the keyset value).
 */
const STATS_SORT: Record<Exclude<UsageOrderField, "CREATED_AT">, { column: string; id: string; type: "int" | "bigint" }> = {
  MEMBERS: { column: "st.members", id: "st.tenant_id", type: "int" },
  PROJECTS: { column: "st.projects", id: "st.tenant_id", type: "int" },
  DEPLOYMENTS: { column: "st.deployments", id: "st.tenant_id", type: "int" },
  WORKFLOWS: { column: "st.workflows", id: "st.tenant_id", type: "int" },
  API_REQUESTS: { column: "rq.api_requests", id: "rq.tenant_id", type: "bigint" },
};

/** A tenant_stats row's deployments by status, as the statement's `by_status`. */
const STATS_BY_STATUS = Prisma.sql`jsonb_build_object('QUEUED', st.deployments_queued, 'BUILDING', st.deployments_building,
  'READY', st.deployments_ready, 'ERROR', st.deployments_error, 'CANCELED', st.deployments_canceled)`;

/** The tenant's own columns of a usage row (UsageRow), from `tenants t`. */
const TENANT_COLUMNS = Prisma.sql`t.id, t.slug, t.name, t.plan, t.status, t.region, t.created_at, t.feature_overrides, t.domain, t.storage_bytes`;


/**
 * Per-tenant usage, one page, in one statement (docs/placement.md,
 * "Platform analytics"). Without from/to every figure is a counter of
 * `tenant_stats` (kept exact by triggers, in the transaction of each change):
 * the page is an index scan of the first `first` counter rows in the chosen
 * order, cut by the keyset (metric, id), joined to their tenants; the placed
 * tenants' counters (read in their placements) are merged in beside it. The
 * cost follows the page (plus the placed tenants), not the data. With
 * from/to, deployments and API requests are counted over the range for every
 * tenant (the cost follows the rows in the range); members, projects and
 * workflows stay counters. The page around it is Pothos's
 * resolveCursorConnection (forward only: first/after), with our signed cursors.
 */
export async function tenantUsage(
  tx: PlatformTx,
  cursors: CursorCodec,
  args: { first?: number | null; after?: string | null; orderBy?: UsageOrder | null } & Range,
  /** The SCHEMA and DATABASE tenants' counts, read in their placements (placement-analytics.ts). */
  placed: PlacedCounts = NO_PLACED_COUNTS,
) {
  checkRange(args);
  const size = args.first ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 0 || size > MAX_PAGE_SIZE) {
    throw badInput("first", `first must be an integer from 0 to ${MAX_PAGE_SIZE}`);
  }
  const order = args.orderBy ?? { field: "CREATED_AT", direction: "DESC" };
  const signature = `TenantUsage/${order.field}:${order.direction}${args.from ? `/${args.from.toISOString()}` : ""}${args.to ? `/${args.to.toISOString()}` : ""}`;
  const sort = order.field === "CREATED_AT" ? null : STATS_SORT[order.field];
  const column = Prisma.raw(`s.${ORDER_COLUMN[order.field]}`);
  const dir = Prisma.raw(order.direction === "DESC" ? "DESC" : "ASC");
  const op = Prisma.raw(order.direction === "DESC" ? "<" : ">");
  /** The keyset (sort value, id) past `after`, as SQL on the given columns. */
  const keysetAfter = (after: string | undefined, value: Prisma.Sql, id: Prisma.Sql) => {
    if (after == null) return Prisma.sql`true`;
    const c = cursors.decode(after, "after", signature);
    if (typeof c.v !== "string" || !/^[0-9a-f-]{36}$/i.test(c.id)) throw badInput("after", "Invalid cursor for after");
    const v = sort === null ? Prisma.sql`${new Date(c.v)}::timestamptz` : Prisma.sql`${BigInt(c.v)}::${Prisma.raw(sort.type)}`;
    return Prisma.sql`(${value}, ${id}) ${op} (${v}, ${c.id}::uuid)`;
  };

  let total: number | undefined;
  const page = await resolveCursorConnection<Promise<TenantUsageStats[]>>(
    {
      args: { first: size, after: args.after },
      defaultSize: DEFAULT_PAGE_SIZE,
      maxSize: MAX_PAGE_SIZE,
      toCursor: (s) => cursors.encode({ s: signature, v: SORT_VALUE[order.field](s), id: s.tenant.id }),
    },
    async ({ after, limit }) => {
      const rows = isRanged(args)
        ? Prisma.sql`
    d AS (
      SELECT tenant_id, sum(n)::int AS n, jsonb_object_agg(status, n) AS by_status
      FROM (SELECT tenant_id, status, count(*)::int AS n FROM deployments
            WHERE true ${rangeOf("created_at", args)} GROUP BY tenant_id, status) ds
      GROUP BY tenant_id
      UNION ALL SELECT tenant_id, deployments, by_status FROM placed),
    r AS (SELECT tenant_id, sum(count)::bigint AS n FROM usage_counters
          WHERE resource = ${REQUEST_RESOURCE}::"QuotaResource" ${rangeOf("window_start", args)} GROUP BY tenant_id),
    s AS (
      SELECT ${TENANT_COLUMNS}, st.members, st.projects + coalesce(p.projects, 0) AS projects,
        st.workflows + coalesce(p.workflows, 0) AS workflows, coalesce(d.n, 0) AS deployments, d.by_status,
        coalesce(r.n, 0)::bigint AS api_requests
      FROM tenant_stats st
      JOIN tenants t ON t.id = st.tenant_id
      LEFT JOIN placed p ON p.tenant_id = st.tenant_id
      LEFT JOIN d ON d.tenant_id = st.tenant_id
      LEFT JOIN r ON r.tenant_id = st.tenant_id)`
        : Prisma.sql`
    pooled AS (
      SELECT ${TENANT_COLUMNS}, st.members, st.projects, st.workflows, st.deployments,
        ${STATS_BY_STATUS} AS by_status, rq.api_requests
      FROM tenant_stats st
      JOIN tenant_request_totals rq ON rq.tenant_id = st.tenant_id
      JOIN tenants t ON t.id = st.tenant_id
      WHERE st.tenant_id <> ALL(${placed.ids}::uuid[])
        AND ${sort === null ? keysetAfter(after, Prisma.sql`t.created_at`, Prisma.sql`t.id`) : keysetAfter(after, Prisma.raw(sort.column), Prisma.raw(sort.id))}
      ORDER BY ${sort === null ? Prisma.sql`t.created_at ${dir}, t.id ${dir}` : Prisma.sql`${Prisma.raw(sort.column)} ${dir}, ${Prisma.raw(sort.id)} ${dir}`}
      LIMIT ${limit}),
    s AS (
      SELECT * FROM pooled
      ${
        placed.ids.length === 0
          ? Prisma.empty
          : Prisma.sql`UNION ALL
      SELECT ${TENANT_COLUMNS}, st.members, st.projects + p.projects, st.workflows + p.workflows,
        st.deployments + p.deployments, p.by_status, rq.api_requests
      FROM placed p
      JOIN tenant_stats st ON st.tenant_id = p.tenant_id
      JOIN tenant_request_totals rq ON rq.tenant_id = p.tenant_id
      JOIN tenants t ON t.id = p.tenant_id`
      })`;
      const found = await tx.$queryRaw<UsageRow[]>(Prisma.sql`
    WITH ${placedCte(placed)}, ${rows}
    SELECT s.*, (SELECT count(*)::int FROM tenant_stats) AS total
    FROM s
    WHERE ${keysetAfter(after, column, Prisma.sql`s.id`)}
    ORDER BY ${column} ${dir}, s.id ${dir}
    LIMIT ${limit}`);
      total = found[0]?.total;
      return found.map(usageStats);
    },
  );
  // An empty page past the end carries no total: count then (rare), still inside the transaction.
  total ??= (await tx.$queryRaw<{ n: number }[]>(Prisma.sql`SELECT count(*)::int AS n FROM tenants`))[0]?.n ?? 0;
  const count = total;
  // Pothos gives an empty page the `after` cursor (or ""); this list answers null there, as the others do.
  const empty = page.edges.length === 0;
  return {
    ...page,
    pageInfo: { ...page.pageInfo, ...(empty && { startCursor: null, endCursor: null }) },
    totalCount: () => Promise.resolve(count),
  };
}
