import { describe, expect, it } from "vitest";
import { CursorCodec } from "../../src/infra/cursor.ts";
import { cursorFor, pageRequest, sortSignature, toConnection, type Sort } from "../../src/graphql/pagination.ts";

/** A codec of its own: a cursor of another key is refused like a forged one. */
const cursors = new CursorCodec("pagination-test-secret");
const ID = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
const row = (n: number) => ({ id: ID(n), createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)), name: `row ${n}` });
const DESC: Sort = { field: "createdAt", direction: "DESC" };
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as { extensions?: Record<string, unknown> }).extensions;
  }
  throw new Error("expected an error");
};

describe("pageRequest", () => {
  it("defaults to the first 20 in sort order, fetching one more", () => {
    const p = pageRequest(cursors, {});
    expect(p).toMatchObject({ size: 20, take: 21, backward: false, where: undefined, keysets: [] });
    expect(p.orderBy).toEqual([{ createdAt: "desc" }, { id: "desc" }]);
  });

  it("fetches against the sort order for last, with or without before", () => {
    expect(pageRequest(cursors, { last: 5 }, DESC).orderBy).toEqual([{ createdAt: "asc" }, { id: "asc" }]);
    expect(pageRequest(cursors, { last: 5 }, { field: "name", direction: "ASC" }).orderBy).toEqual([{ name: "desc" }, { id: "desc" }]);
    const before = cursorFor(cursors, row(3), DESC);
    expect(pageRequest(cursors, { before }, DESC)).toMatchObject({ backward: true, size: 20 });
    expect(pageRequest(cursors, { first: 2, before }, DESC)).toMatchObject({ backward: false, size: 2 });
  });

  it("limits page sizes to 0..100 and refuses first with last", () => {
    expect(pageRequest(cursors, { first: 100 }).take).toBe(101);
    expect(pageRequest(cursors, { first: 0 }).take).toBe(1);
    expect(code(() => pageRequest(cursors, { first: 101 }))).toMatchObject({ code: "BAD_USER_INPUT", field: "first" });
    expect(code(() => pageRequest(cursors, { last: 1000 }))).toMatchObject({ code: "BAD_USER_INPUT", field: "last" });
    expect(code(() => pageRequest(cursors, { first: -1 }))).toMatchObject({ code: "BAD_USER_INPUT", field: "first" });
    expect(code(() => pageRequest(cursors, { first: 1.5 }))).toMatchObject({ code: "BAD_USER_INPUT", field: "first" });
    expect(code(() => pageRequest(cursors, { first: 1, last: 1 }))).toMatchObject({ code: "BAD_USER_INPUT", field: "last" });
  });

  it("turns after and before into keyset conditions in the right direction", () => {
    const after = cursorFor(cursors, row(5), DESC);
    const before = cursorFor(cursors, row(1), DESC);
    const p = pageRequest(cursors, { first: 10, after, before }, DESC);
    expect(p.keysets).toEqual([
      { value: row(5).createdAt.toISOString(), id: ID(5), op: "<" },
      { value: row(1).createdAt.toISOString(), id: ID(1), op: ">" },
    ]);
    expect(p.where).toEqual({
      AND: [
        { OR: [{ createdAt: { lt: row(5).createdAt } }, { createdAt: row(5).createdAt, id: { lt: ID(5) } }] },
        { OR: [{ createdAt: { gt: row(1).createdAt } }, { createdAt: row(1).createdAt, id: { gt: ID(1) } }] },
      ],
    });
    const asc: Sort = { field: "name", direction: "ASC" };
    const q = pageRequest(cursors, { first: 1, after: cursorFor(cursors, row(2), asc) }, asc);
    expect(q.where).toEqual({ OR: [{ name: { gt: "row 2" } }, { name: "row 2", id: { gt: ID(2) } }] });
  });

  it("refuses cursors of another sort or list, and tampered ones", () => {
    const c = cursorFor(cursors, row(1), DESC, "Project");
    expect(pageRequest(cursors, { after: c }, DESC, "Project").keysets).toHaveLength(1);
    expect(code(() => pageRequest(cursors, { after: c }, { field: "createdAt", direction: "ASC" }, "Project"))).toMatchObject({
      code: "BAD_USER_INPUT",
      field: "after",
    });
    expect(code(() => pageRequest(cursors, { after: c }, { field: "updatedAt", direction: "DESC" }, "Project"))).toMatchObject({ field: "after" });
    expect(code(() => pageRequest(cursors, { before: c }, DESC, "Deployment"))).toMatchObject({ code: "BAD_USER_INPUT", field: "before" });
    const [body, mac] = c.split(".");
    const forged = Buffer.from(JSON.stringify({ s: sortSignature(DESC, "Project"), v: "2030-01-01T00:00:00.000Z", id: ID(1) })).toString("base64url");
    for (const bad of [`${forged}.${mac}`, `${body}.${mac!.replace(/^./, (ch) => (ch === "A" ? "B" : "A"))}`, "garbage", `${body}`, `${c}.x`]) {
      expect(code(() => pageRequest(cursors, { after: bad }, DESC, "Project"))).toMatchObject({ code: "BAD_USER_INPUT", field: "after" });
    }
    // Correctly signed but not a position: a non-uuid id or a bad date.
    for (const payload of [
      { s: "Project/createdAt:DESC", v: "2030-01-01T00:00:00.000Z", id: "1; DROP TABLE x" },
      { s: "Project/createdAt:DESC", v: "yesterday", id: ID(1) },
      { s: "Project/createdAt:DESC", v: null, id: ID(1) },
    ]) {
      expect(code(() => pageRequest(cursors, { after: cursors.encode(payload) }, DESC, "Project"))).toMatchObject({ code: "BAD_USER_INPUT" });
    }
  });

  it("cursors round-trip and are opaque", () => {
    const c = cursorFor(cursors, row(7), DESC, "Deployment");
    expect(c).not.toContain(ID(7));
    expect(cursors.decode(c, "after", "Deployment/createdAt:DESC")).toEqual({
      s: "Deployment/createdAt:DESC",
      v: row(7).createdAt.toISOString(),
      id: ID(7),
    });
  });

  it("the codec's signing key cannot be read from it (a cast, its keys, its JSON), only used", () => {
    const seen = cursors as unknown as Record<string, unknown>;
    expect(seen["key"]).toBeUndefined();
    expect(Object.keys(cursors)).toEqual([]);
    // A context logged or answered whole shows no key material.
    expect(JSON.stringify({ cursors })).toBe(`{"cursors":{}}`);
  });
});

describe("toConnection", () => {
  const total = async () => 99;
  const rows = (ns: number[]) => ns.map(row);

  it("forward: the extra row means a next page; after means a previous one", () => {
    const first = toConnection(rows([9, 8, 7]), pageRequest(cursors, { first: 2 }), total);
    expect(first.edges.map((e) => e.node.id)).toEqual([ID(9), ID(8)]);
    expect(first.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    expect(first.pageInfo.startCursor).toBe(first.edges[0]!.cursor);
    expect(first.pageInfo.endCursor).toBe(first.edges[1]!.cursor);
    const next = toConnection(rows([7]), pageRequest(cursors, { first: 2, after: first.pageInfo.endCursor }), total);
    expect(next.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
  });

  it("backward: rows come back in list order; the extra row means a previous page", () => {
    // Fetched against the order (ascending) for `last: 2` on a DESC list.
    const last = toConnection(rows([1, 2, 3]), pageRequest(cursors, { last: 2 }), total);
    expect(last.edges.map((e) => e.node.id)).toEqual([ID(2), ID(1)]);
    expect(last.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
    const before = toConnection(rows([3, 4]), pageRequest(cursors, { last: 2, before: last.pageInfo.startCursor }), total);
    expect(before.edges.map((e) => e.node.id)).toEqual([ID(4), ID(3)]);
    expect(before.pageInfo).toMatchObject({ hasPreviousPage: false, hasNextPage: true });
  });

  it("an empty page has null cursors", async () => {
    const empty = toConnection([], pageRequest(cursors, { first: 5 }), total);
    expect(empty.pageInfo).toEqual({ hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null });
    expect(await empty.totalCount()).toBe(99);
  });
});
