import DataLoader from "dataloader";
import type { Context } from "../tenancy/context.ts";

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
