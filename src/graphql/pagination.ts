import { badInput } from "../errors.ts";
import { isUuid } from "../uuid.ts";
import type { CursorCodec } from "../infra/cursor.ts";

/**
 * Relay connections over keyset pagination: (sort key, id) in the order the
 * list is sorted, never OFFSET. Stable under inserts and deletes; each
 * cursor carries the list and the sort it was made for.
 *
 * Relay's algorithm: `after` and `before` cut the list, then `first` takes
 * from the start of what is left, `last` from its end. `first` fetches in
 * the sort order, `last` against it (and the page is reversed back), so both
 * walk the (sort key, id) index and never count or skip rows.
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

/** The sort of an `orderBy` argument (`{ field: CREATED_AT | UPDATED_AT | NAME, direction }`); newest first without one. */
export function sortFrom(order: { field: string; direction: "ASC" | "DESC" } | null | undefined): Sort {
  if (!order) return { field: "createdAt", direction: "DESC" };
  const field = order.field === "NAME" ? "name" : order.field === "UPDATED_AT" ? "updatedAt" : "createdAt";
  return { field, direction: order.direction };
}

/** One cut of the list: rows whose (sort key, id) is `op` the cursor's. */
export interface Keyset {
  /** The sort key's value as in the cursor (ISO date or string). */
  value: string;
  id: string;
  op: "<" | ">";
}

export interface PageRequest {
  /** Rows to fetch: page size + 1, to learn whether there is more. */
  take: number;
  size: number;
  /** `last`: fetched against the sort order, reversed by toConnection. */
  backward: boolean;
  /** Prisma where for the cuts (undefined when there is none). */
  where: Record<string, unknown> | undefined;
  /** Prisma orderBy in fetch order. */
  orderBy: Record<string, "asc" | "desc">[];
  sort: Sort;
  /** What cursors of this list carry: list kind and sort. */
  signature: string;
  hasAfter: boolean;
  hasBefore: boolean;
  /** The cuts, for hand-written SQL: AND them. */
  keysets: Keyset[];
  /** Signs the cursors of the page's edges. */
  cursors: CursorCodec;
}

/** What a cursor must carry to be used on a list: its kind and its sort. */
export const sortSignature = (sort: Sort, kind?: string) => `${kind ? `${kind}/` : ""}${sort.field}:${sort.direction}`;

function checkSize(name: string, n: number | null | undefined) {
  if (n == null) return;
  if (!Number.isInteger(n) || n < 0) throw badInput(name, `${name} must be a non-negative integer`);
  if (n > MAX_PAGE_SIZE) throw badInput(name, `${name} must be at most ${MAX_PAGE_SIZE}`);
}

/**
 * The page that `args` ask for on a list sorted by `sort`. `kind` names the
 * list (e.g. "Project"): a cursor of another list or sort is BAD_USER_INPUT.
 */
export function pageRequest(cursors: CursorCodec, args: ConnectionArgs, sort: Sort = DEFAULT_SORT, kind?: string): PageRequest {
  checkSize("first", args.first);
  checkSize("last", args.last);
  if (args.first != null && args.last != null) throw badInput("last", "Use first or last, not both");
  // `before` alone asks for the page just before the cursor.
  const backward = args.last != null || (args.before != null && args.first == null);
  const size = (backward ? args.last : args.first) ?? DEFAULT_PAGE_SIZE;
  const signature = sortSignature(sort, kind);
  const desc = sort.direction === "DESC";

  // Fetch direction: forward follows the sort, backward runs against it.
  const fetchDesc = desc !== backward;
  const dir = fetchDesc ? "desc" : "asc";
  const orderBy = [{ [sort.field]: dir }, { id: dir }] as Record<string, "asc" | "desc">[];

  const keysets: Keyset[] = [];
  const conditions: Record<string, unknown>[] = [];
  const cut = (field: "after" | "before", cursor: string) => {
    const c = cursors.decode(cursor, field, signature);
    const invalid = () => badInput(field, `Invalid cursor for ${field}`);
    if (typeof c.v !== "string" || !isUuid(c.id)) throw invalid();
    const value = sort.field === "name" ? c.v : new Date(c.v);
    if (value instanceof Date && Number.isNaN(value.getTime())) throw invalid();
    // after: the rows that follow the cursor in sort order; before: those preceding it.
    const op = (field === "after") === desc ? "lt" : "gt";
    conditions.push({ OR: [{ [sort.field]: { [op]: value } }, { [sort.field]: value, id: { [op]: c.id } }] });
    keysets.push({ value: c.v, id: c.id, op: op === "lt" ? "<" : ">" });
  };
  if (args.after != null) cut("after", args.after);
  if (args.before != null) cut("before", args.before);

  const where = conditions.length === 0 ? undefined : conditions.length === 1 ? conditions[0] : { AND: conditions };
  return {
    take: size + 1,
    size,
    backward,
    where,
    orderBy,
    sort,
    signature,
    hasAfter: args.after != null,
    hasBefore: args.before != null,
    keysets,
    cursors,
  };
}

export interface Connection<T> {
  edges: { readonly cursor: string; node: T }[];
  pageInfo: {
    hasNextPage: boolean;
    hasPreviousPage: boolean;
    readonly startCursor: string | null;
    readonly endCursor: string | null;
  };
  totalCount: () => Promise<number>;
}

type Row = { id: string } & Partial<Record<SortField, unknown>>;

function rowCursor(cursors: CursorCodec, row: Row, field: SortField, signature: string): string {
  const v = row[field];
  return cursors.encode({ s: signature, v: v instanceof Date ? v.toISOString() : v == null ? null : String(v), id: row.id });
}

export function cursorFor(cursors: CursorCodec, row: Row, sort: Sort, kind?: string): string {
  return rowCursor(cursors, row, sort.field, sortSignature(sort, kind));
}

/**
 * An edge whose cursor is signed only when a client selects it: a
 * dashboard that never asks for cursors does not pay an HMAC per row.
 */
class Edge<T extends Row> {
  private signed: string | undefined;
  constructor(
    readonly node: T,
    private readonly page: PageRequest,
  ) {}
  get cursor(): string {
    return (this.signed ??= rowCursor(this.page.cursors, this.node, this.page.sort.field, this.page.signature));
  }
}

/**
 * Builds the connection from rows fetched with `page` (take = size + 1).
 * The extra row tells whether more exist in the fetch direction; the other
 * direction is known to hold at least the row of the cursor that cut it
 * (Relay lets a server answer that side cheaply, and this costs no query).
 *
 * Not Pothos's resolveCursorConnection (used where it fits: Platform.tenantUsage,
 * forward only): it signs every edge's cursor up front, answers an empty page
 * with the `after` cursor, and walks `after`+`before` forward, where these
 * lists sign on demand, answer null and walk back from `before`.
 */
export function toConnection<T extends Row>(rows: T[], page: PageRequest, totalCount: () => Promise<number>): Connection<T> {
  const more = rows.length > page.size;
  const slice = rows.slice(0, page.size);
  if (page.backward) slice.reverse();
  const edges = slice.map((node) => new Edge(node, page));
  return {
    edges,
    pageInfo: {
      hasNextPage: page.backward ? page.hasBefore : more || page.hasBefore,
      hasPreviousPage: page.backward ? more || page.hasAfter : page.hasAfter,
      get startCursor() {
        return edges[0]?.cursor ?? null;
      },
      get endCursor() {
        return edges[edges.length - 1]?.cursor ?? null;
      },
    },
    totalCount,
  };
}

/** The two calls of a Prisma model delegate (of the tenant-scoped client) that a page needs. */
export interface PagedModel<T, Where> {
  findMany(args: { where: Where | Record<string, unknown>; orderBy: PageRequest["orderBy"]; take: number }): Promise<T[]>;
  count(args?: { where: Where }): Promise<number>;
}

/**
 * One keyset page of a model: the rows of `where` cut by the page's cursors,
 * in the page's order, and the total of `where` on demand. `query` is the
 * Pothos selection of the nodes (queryFromInfo), spread into findMany.
 */
export async function findPage<T extends Row, Where extends object>(
  model: PagedModel<T, Where>,
  page: PageRequest,
  where: Where | undefined,
  query: object = {},
): Promise<Connection<T>> {
  const cut = where ? (page.where ? { AND: [where, page.where] } : where) : (page.where ?? {});
  const rows = await model.findMany({ ...query, where: cut, orderBy: page.orderBy, take: page.take });
  return toConnection(rows, page, () => (where ? model.count({ where }) : model.count()));
}
