import { GraphQLError, GraphQLScalarType, type ValueNode } from "graphql";
import { DateTimeResolver, EmailAddressResolver, JSONResolver } from "graphql-scalars";
import { builder } from "./builder.ts";

/** The form `Date.prototype.toISOString` gives for years 0000-9999: what a DateTime is in every answer. */
const CANONICAL_ISO = /^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$/;

/**
 * graphql-scalars' DateTime, except what `serialize` hands to the answer:
 * the ISO string itself, where graphql-scalars returns a `Date` that
 * `JSON.stringify` turns into the same string through `toJSON`. The bytes
 * of the answer are the same; the difference is the cost: an object with
 * `toJSON` takes V8's `JSON.stringify` off its fast path, and the
 * dashboard's 120 Dates made the stringify of its 30 KB answer about 4x
 * slower than the same answer with strings (docs/performance.md, "Dates
 * as strings"). A string already in that form (deployment.prefetch.ts
 * keeps PostgreSQL's timestamps as such) is passed through; any other
 * string or number is read as before and answered in that form.
 *
 * What it reads is a year 0001-9999 (PostgreSQL's timestamptz has no year
 * 0, and the canonical form has four digits): graphql-scalars accepts
 * `0000-01-01T00:00:00Z`, which PostgreSQL refused as an unexpected error
 * (review-1330 F5). The refusal is BAD_USER_INPUT; the request's input
 * errors (src/http/use-input-errors.ts) name the argument or variable it
 * was sent in.
 */
const DateTime = new GraphQLScalarType({
  ...DateTimeResolver.toConfig(),
  parseValue: (value: unknown) => inRange(DateTimeResolver.parseValue(value)),
  parseLiteral: (node: ValueNode, variables?: Record<string, unknown> | null) => inRange(DateTimeResolver.parseLiteral(node, variables), node),
  serialize(value: unknown): string {
    if (typeof value === "string" && CANONICAL_ISO.test(value) && validDay(value)) return value;
    const date = value instanceof Date ? value : DateTimeResolver.serialize(value);
    // An invalid Date: graphql-scalars' serialize throws its error.
    return (Number.isNaN(date.getTime()) ? DateTimeResolver.serialize(date) : date).toISOString();
  },
});

/** A Date of the years 0001-9999, else BAD_USER_INPUT (the literal's node, when it is one: its path is added). */
function inRange(date: Date, node?: ValueNode): Date {
  const year = date.getUTCFullYear();
  if (year >= 1 && year <= 9999) return date;
  throw new GraphQLError("must be a DateTime of the years 0001 to 9999", { nodes: node, extensions: { code: "BAD_USER_INPUT" } });
}

/** The day exists in its month (the pattern allows 31 everywhere). */
function validDay(iso: string): boolean {
  const day = Number(iso.slice(8, 10));
  if (day <= 28) return true;
  const year = Number(iso.slice(0, 4));
  const month = Number(iso.slice(5, 7));
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31);
}

builder.addScalarType("DateTime", DateTime);
builder.addScalarType("JSON", JSONResolver);
builder.addScalarType("EmailAddress", EmailAddressResolver);
