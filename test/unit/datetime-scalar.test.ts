import type { GraphQLScalarType } from "graphql";
import { DateTimeResolver } from "graphql-scalars";
import { describe, expect, it } from "vitest";
import { schema } from "../../src/schema.ts";

/**
 * The DateTime scalar answers ISO strings, not Dates (src/graphql/scalars.ts:
 * a Date in the result takes JSON.stringify off its fast path), and the
 * answer's bytes are graphql-scalars' for every value, errors included.
 */
describe("DateTime serialize", () => {
  const dateTime = schema.getType("DateTime") as GraphQLScalarType;
  const json = (serialize: (v: unknown) => unknown, v: unknown) => {
    try {
      return JSON.stringify(serialize(v));
    } catch (e) {
      return `error: ${(e as Error).message}`;
    }
  };

  it("hands the answer a string", () => {
    expect(dateTime.serialize(new Date("2026-11-24T16:00:00.12Z"))).toBe("2026-11-24T16:00:00.120Z");
    expect(dateTime.serialize("2026-11-24T16:00:00.120Z")).toBe("2026-11-24T16:00:00.120Z");
  });

  it.each([
    new Date(0),
    new Date("2026-11-24T16:00:00.12Z"),
    new Date(Date.UTC(10000, 0, 1)),
    new Date(-62198755200000),
    new Date(NaN),
    "2026-11-24T16:00:00.120Z",
    "2026-11-24T16:00:00.12+00:00",
    "2026-11-24T17:00:00.120+01:00",
    "2024-02-29T00:00:00.000Z",
    "2023-02-29T00:00:00.000Z",
    "1900-02-29T00:00:00.000Z",
    "0000-02-29T00:00:00.000Z",
    "2026-04-31T00:00:00.000Z",
    "2026-04-30T00:00:00.000Z",
    "2026-11-24T23:59:60.000Z",
    "2026-13-01T00:00:00.000Z",
    "not a date",
    1764000000000,
    true,
  ])("%s answers as graphql-scalars' DateTime does", (value) => {
    expect(json((v) => dateTime.serialize(v), value)).toBe(json((v) => DateTimeResolver.serialize(v), value));
  });
});
