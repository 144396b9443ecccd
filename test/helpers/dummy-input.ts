import { randomUUID } from "node:crypto";
import {
  getNamedType,
  isEnumType,
  isInputObjectType,
  isListType,
  isNonNullType,
  isScalarType,
  type GraphQLField,
  type GraphQLInputType,
} from "graphql";

/**
 * Well-formed but harmless arguments for any field, derived from the schema:
 * required fields only, ids that name no row. Used to call every field
 * generically (the policy tests care about who may call, not about what the
 * call does).
 */
let n = 0;

export function dummyValue(type: GraphQLInputType): unknown {
  if (isNonNullType(type)) return dummyValue(type.ofType);
  if (isListType(type)) return [];
  if (isEnumType(type)) return type.getValues()[0]!.value;
  if (isInputObjectType(type)) {
    return Object.fromEntries(
      Object.values(type.getFields())
        .filter((f) => isNonNullType(f.type) && f.defaultValue === undefined)
        .map((f) => [f.name, dummyValue(f.type)]),
    );
  }
  if (isScalarType(type)) {
    n++;
    switch (type.name) {
      case "ID":
        return Buffer.from(`Nothing:${randomUUID()}`).toString("base64");
      case "Int":
      case "Float":
        return 1;
      case "Boolean":
        return false;
      case "DateTime":
        return new Date(Date.now() + 86_400_000).toISOString();
      case "JSON":
        return {};
      case "EmailAddress":
        return `dummy-${n}-${randomUUID().slice(0, 8)}@example.test`;
      default:
        return `dummy-${n}-${randomUUID().slice(0, 8)}`;
    }
  }
  throw new Error(`no dummy for ${String(type)}`);
}

/** `query|mutation($a: T!) { field(a: $a) { __typename } }` and its variables. */
export function callField(field: GraphQLField<unknown, unknown>, kind: "query" | "mutation" | "subscription") {
  const args = field.args.filter((a) => isNonNullType(a.type));
  const vars = args.map((a) => `$${a.name}: ${a.type.toString()}`).join(", ");
  const call = args.map((a) => `${a.name}: $${a.name}`).join(", ");
  const named = getNamedType(field.type);
  const selection = isScalarType(named) || isEnumType(named) ? "" : " { __typename }";
  return {
    query: `${kind}${vars ? `(${vars})` : ""} { ${field.name}${call ? `(${call})` : ""}${selection} }`,
    variables: Object.fromEntries(args.map((a) => [a.name, dummyValue(a.type)])),
  };
}
