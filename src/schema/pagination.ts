import { badInput } from "../errors.ts";
import { decodeCursor, encodeCursor } from "./cursor.ts";

/**
 * Relay connections over keyset pagination: (sort key, id) in the order the
 * list is sorted, never OFFSET. Stable under inserts and deletes; each
 * cursor carries the sort it was made for.
 */

export const MAX_PAGE_SIZE = 100;
export const DEFAULT_PAGE_SIZE = 20;

export interface ConnectionArgs {
  first?: number | null;
  after?: string | null;
  last?: number | null;
  before?: string | null;
}

export type SortField = "createdAt" | "updatedAt" | "name";
export type Direction = "ASC" | "DESC";

export interface Sort {
  field: SortField;
  direction: Direction;
}

export const DEFAULT_SORT: Sort = { field: "createdAt", direction: "DESC" };

export interface PageRequest {
  /** Rows to fetch: page size + 1, to learn whether there is more. */
  take: number;
  size: number;
  backward: boolean;
  /** Prisma where for the keyset position (undefined at the start). */
  where: Record<string, unknown> | undefined;
  /** Prisma orderBy in fetch order. */
  orderBy: Record<string, "asc" | "desc">[];
  sort: Sort;
  hasCursor: boolean;
  /** The raw keyset, for hand-written SQL. */
  keyset?: { value: string | null; id: string; op: "<" | ">" };
}

const signature = (sort: Sort) => `${sort.field}:${sort.direction}`;

function checkSize(name: string, n: number | null | undefined) {
  if (n == null) return;
  if (!Number.isInteger(n) || n < 0) throw badInput(name, `${name} must be a non-negative integer`);
  if (n > MAX_PAGE_SIZE) throw badInput(name, `${name} must be at most ${MAX_PAGE_SIZE}`);
}

export function pageRequest(args: ConnectionArgs, sort: Sort = DEFAULT_SORT): PageRequest {
  checkSize("first", args.first);
  checkSize("last", args.last);
  if (args.first != null && args.last != null) throw badInput("last", "Use first or last, not both");
  if (args.after != null && args.before != null) throw badInput("before", "Use after or before, not both");
  const backward = args.last != null || (args.before != null && args.first == null);
  const size = (backward ? args.last : args.first) ?? DEFAULT_PAGE_SIZE;
  const cursorField = backward ? "before" : "after";
  const cursor = backward ? args.before : args.after;

  // Fetch direction: forward follows the sort, backward runs against it.
  const fetchDesc = (sort.direction === "DESC") !== backward;
  const dir = fetchDesc ? "desc" : "asc";
  const orderBy = [{ [sort.field]: dir }, { id: dir }] as Record<string, "asc" | "desc">[];

  let where: Record<string, unknown> | undefined;
  let keyset: PageRequest["keyset"];
  if (cursor != null) {
    const c = decodeCursor(cursor, cursorField, signature(sort));
    const op = fetchDesc ? "lt" : "gt";
    const value = sort.field === "name" ? c.v : c.v === null ? null : new Date(c.v);
    if (value === null || (value instanceof Date && Number.isNaN(value.getTime()))) {
      throw badInput(cursorField, `Invalid cursor for ${cursorField}`);
    }
    where = {
      OR: [{ [sort.field]: { [op]: value } }, { [sort.field]: value, id: { [op]: c.id } }],
    };
    keyset = { value: c.v, id: c.id, op: fetchDesc ? "<" : ">" };
  }
  return { take: size + 1, size, backward, where, orderBy, sort, hasCursor: cursor != null, keyset };
}

export interface Connection<T> {
  edges: { cursor: string; node: T }[];
  pageInfo: {
    hasNextPage: boolean;
    hasPreviousPage: boolean;
    startCursor: string | null;
    endCursor: string | null;
  };
  totalCount: () => Promise<number>;
}

type Row = { id: string } & Partial<Record<SortField, unknown>>;

export function cursorFor(row: Row, sort: Sort): string {
  const v = row[sort.field];
  return encodeCursor({
    s: signature(sort),
    v: v instanceof Date ? v.toISOString() : v == null ? null : String(v),
    id: row.id,
  });
}

/** Builds the connection from rows fetched with `page` (take = size + 1). */
export function toConnection<T extends Row>(rows: T[], page: PageRequest, totalCount: () => Promise<number>): Connection<T> {
  const more = rows.length > page.size;
  const slice = rows.slice(0, page.size);
  if (page.backward) slice.reverse();
  const edges = slice.map((node) => ({ cursor: cursorFor(node, page.sort), node }));
  return {
    edges,
    pageInfo: {
      hasNextPage: page.backward ? page.hasCursor : more,
      hasPreviousPage: page.backward ? more : page.hasCursor,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges[edges.length - 1]?.cursor ?? null,
    },
    totalCount,
  };
}
