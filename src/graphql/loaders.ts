import DataLoader from "dataloader";
import type { GraphQLResolveInfo } from "graphql";
import { Prisma } from "../generated/prisma/client.ts";
import type { Context } from "../tenancy/context.ts";
import type { PageRequest, SortField } from "./pagination.ts";

/**
 * Per-request DataLoaders. They live on the request context, which belongs
 * to exactly one tenant, so a loader's cache can never answer for another
 * tenant; the tenant is also part of every query they run.
 */
export function loader<K, V, C = K>(
  ctx: Context,
  name: string,
  batch: (keys: readonly K[]) => Promise<(V | Error)[]>,
  options?: DataLoader.Options<K, V, C>,
): DataLoader<K, V, C> {
  const key = `${ctx.tenant?.id ?? "-"}:${name}`;
  let l = ctx.loaders.get(key) as DataLoader<K, V, C> | undefined;
  if (!l) {
    l = new DataLoader(batch, options);
    ctx.loaders.set(key, l);
  }
  return l;
}

const perSelectionMemo = new WeakMap<object, WeakMap<object, unknown>>();

/**
 * Computes something that depends only on the field's arguments once per
 * execution, not once per parent: a nested connection under a list of 20
 * projects resolves 20 times with the same arguments. Keyed by the
 * execution's variable values (one object per operation executed) and the
 * field's AST node, which together fix the arguments.
 */
export function perSelection<T>(info: GraphQLResolveInfo, compute: () => T): T {
  let byNode = perSelectionMemo.get(info.variableValues);
  if (!byNode) {
    byNode = new WeakMap();
    perSelectionMemo.set(info.variableValues, byNode);
  }
  const node = info.fieldNodes[0]!;
  if (byNode.has(node)) return byNode.get(node) as T;
  const value = compute();
  byNode.set(node, value);
  return value;
}

/** Orders `rows` by `keys`, null where missing. */
export function byKeys<T, K>(keys: readonly K[], rows: T[], keyOf: (row: T) => K): (T | null)[] {
  const map = new Map(rows.map((r) => [keyOf(r), r]));
  return keys.map((k) => map.get(k) ?? null);
}

const SORT_COLUMNS: Record<SortField, string> = { createdAt: "created_at", updatedAt: "updated_at", name: "name" };

/**
 * The first page of children of each of many parents, whole rows, in one
 * statement: a LATERAL join that walks the (tenant_id, <parent>, sort key,
 * id) index once per parent. Prisma alone would fetch every child row and
 * slice in memory (or issue a query per parent). Raw SQL bypasses wall 1, so
 * tenant_id is filtered here; RLS (wall 2) applies as everywhere.
 */
export interface ChildRowsOptions {
  table: "deployments" | "workflows" | "projects";
  /** The child columns to return, from alias `c`, named as the Prisma model's fields. */
  columns: Prisma.Sql;
  tenantId: string;
  page: PageRequest;
  /** Further conditions on the child rows (alias `c`), each starting with AND. */
  filter?: Prisma.Sql;
  /** Joins to one row per child (e.g. its creator), for the columns. */
  join?: Prisma.Sql;
}

/** The ORDER BY of a page over alias `alias` (`c.created_at DESC, c.id DESC`), in fetch order. */
export function pageOrderSql(page: PageRequest, alias: string): Prisma.Sql {
  const dir = page.orderBy[0]![page.sort.field] === "desc" ? "DESC" : "ASC";
  return Prisma.raw(`${alias}.${SORT_COLUMNS[page.sort.field]} ${dir}, ${alias}.id ${dir}`);
}

/**
 * One keyset page of the tenant's rows of a table (alias `c`): its columns,
 * cuts, order and LIMIT; `parent` restricts it to one parent's children.
 * Raw SQL bypasses wall 1, so tenant_id is filtered here; RLS (wall 2)
 * applies as everywhere.
 */
export function pageRowsSql(opts: ChildRowsOptions, parent?: Prisma.Sql): Prisma.Sql {
  const { page } = opts;
  const col = Prisma.raw(`c.${SORT_COLUMNS[page.sort.field]}`);
  const value = (v: string) => (page.sort.field === "name" ? Prisma.sql`${v}::text` : Prisma.sql`${new Date(v)}::timestamptz`);
  const cuts = page.keysets.map(
    (k) => Prisma.sql`AND (${col}, c.id) ${Prisma.raw(k.op)} (${value(k.value)}, ${k.id}::uuid)`,
  );
  return Prisma.sql`SELECT ${opts.columns} FROM ${Prisma.raw(opts.table)} c ${opts.join ?? Prisma.empty}
         WHERE c.tenant_id = ${opts.tenantId}::uuid ${parent ?? Prisma.empty}
               ${opts.filter ?? Prisma.empty} ${cuts.length ? Prisma.join(cuts, " ") : Prisma.empty}
         ORDER BY ${pageOrderSql(page, "c")}
         LIMIT ${page.take}`;
}

export function firstPerParentSql(opts: ChildRowsOptions & { parentColumn: "project_id"; parentIds: readonly string[] }) {
  return Prisma.sql`
    SELECT x.*
      FROM unnest(${[...opts.parentIds]}::uuid[]) AS p(id)
      CROSS JOIN LATERAL (
        ${pageRowsSql(opts, Prisma.raw(`AND c.${opts.parentColumn} = p.id`))}
      ) x`;
}

export interface ChildPageKey {
  parentId: string;
  /** Rows wanted for this parent (page size + 1). */
  take: number;
}

/**
 * A loader of per-parent child pages that share a list, sort, cuts and
 * filter (`name` must say which) but may differ in size: one statement
 * fetches the largest size asked for in the batch, and each caller gets its
 * prefix. So `latestDeployment` (1 row) and `deployments(first: 5)` of the
 * same projects cost one statement, not two.
 */
export function childPageLoader<T>(
  ctx: Context,
  name: string,
  fetch: (parentIds: readonly string[], take: number) => Promise<T[]>,
  parentOf: (row: T) => string | null,
): DataLoader<ChildPageKey, T[], string> {
  return loader<ChildPageKey, T[], string>(
    ctx,
    name,
    async (keys) => {
      let take = 0;
      for (const k of keys) take = Math.max(take, k.take);
      const parentIds = [...new Set(keys.map((k) => k.parentId))];
      const groups = new Map<string, T[]>(parentIds.map((id) => [id, []]));
      for (const row of await fetch(parentIds, take)) groups.get(parentOf(row) ?? "")?.push(row);
      return keys.map((k) => {
        const rows = groups.get(k.parentId)!;
        return rows.length > k.take ? rows.slice(0, k.take) : rows;
      });
    },
    { cacheKeyFn: (k) => `${k.parentId}:${k.take}` },
  );
}
