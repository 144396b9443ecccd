import DataLoader from "dataloader";
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

/** Orders `rows` by `keys`, null where missing. */
export function byKeys<T, K>(keys: readonly K[], rows: T[], keyOf: (row: T) => K): (T | null)[] {
  const map = new Map(rows.map((r) => [keyOf(r), r]));
  return keys.map((k) => map.get(k) ?? null);
}

export function groupByKeys<T, K>(keys: readonly K[], rows: T[], keyOf: (row: T) => K): T[][] {
  const map = new Map<K, T[]>(keys.map((k) => [k, []]));
  for (const r of rows) map.get(keyOf(r))?.push(r);
  return keys.map((k) => map.get(k)!);
}

const SORT_COLUMNS: Record<SortField, string> = { createdAt: "created_at", updatedAt: "updated_at", name: "name" };

/**
 * The ids of the first page of children of each of many parents, in one
 * statement: a LATERAL join that walks the (tenant_id, <parent>, sort key,
 * id) index once per parent. Prisma alone would fetch every child row and
 * slice in memory. Raw SQL bypasses wall 1, so tenant_id is filtered here;
 * RLS (wall 2) applies as everywhere.
 */
export function firstPerParentSql(opts: {
  table: "deployments" | "workflows";
  parentColumn: "project_id";
  tenantId: string;
  parentIds: readonly string[];
  page: PageRequest;
  /** Further conditions on the child rows (alias `c`), each starting with AND. */
  filter?: Prisma.Sql;
}) {
  const { page } = opts;
  const column = SORT_COLUMNS[page.sort.field];
  const col = Prisma.raw(`c.${column}`);
  const dir = Prisma.raw(page.orderBy[0]![page.sort.field] === "desc" ? "DESC" : "ASC");
  const value = (v: string) => (page.sort.field === "name" ? Prisma.sql`${v}::text` : Prisma.sql`${new Date(v)}::timestamptz`);
  const cuts = page.keysets.map(
    (k) => Prisma.sql`AND (${col}, c.id) ${Prisma.raw(k.op)} (${value(k.value)}, ${k.id}::uuid)`,
  );
  return Prisma.sql`
    SELECT x.id, p.id AS "parentId"
      FROM unnest(${[...opts.parentIds]}::uuid[]) AS p(id)
      CROSS JOIN LATERAL (
        SELECT c.id FROM ${Prisma.raw(opts.table)} c
         WHERE c.tenant_id = ${opts.tenantId}::uuid AND c.${Prisma.raw(opts.parentColumn)} = p.id
               ${opts.filter ?? Prisma.empty} ${cuts.length ? Prisma.join(cuts, " ") : Prisma.empty}
         ORDER BY ${col} ${dir}, c.id ${dir}
         LIMIT ${page.take}
      ) x`;
}
