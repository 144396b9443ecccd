import { createHash } from "node:crypto";
import { getNamedType, isAbstractType, isObjectType, parse, TypeInfo, visit, visitWithTypeInfo, type GraphQLSchema } from "graphql";
import { answerDependence } from "../policy/answer-dependence.ts";
import { policyOf } from "../policy/field-policy.ts";
import { ROLE_RANK } from "../policy/roles.ts";

/**
 * Who an operation document's answer depends on, beyond the tenant's data,
 * read from the schema's metadata once per document (never from an answer):
 * the rule and its argument are in docs/response-cache.md, "Which entries
 * roles share". In short, the caller's role joins the cache key unless
 * every field the document selects answers alike for every role of the
 * tenant: a field with an @auth above the lowest role (or on a type that
 * has one), a field declaring `DEPENDS_ON` (src/policy/answer-dependence.ts),
 * a field returning an interface or union (which object it finds, and how,
 * is its type's loader's, not the selection's), a field the schema does not
 * know or a document that does not parse all keep the role.
 */
export interface DocumentScope {
  /** SHA-256 of the document text: the key hashes this digest, not the text, per request. */
  digest: string;
  /** The caller's role joins the key. */
  role: boolean;
  /** The caller (user or API key id) joins the key. */
  caller: boolean;
}

/** Fields whose answer depends on who asks, textually: over-inclusive at worst (an alias, a comment), never under. */
const CALLER_TEXT = /\bviewer\b/;

const LOWEST_RANK = Math.min(...Object.values(ROLE_RANK));

/**
 * The scope of one document: what its answer depends on among role and
 * caller. `callerRows` (live results shared between subscribers,
 * src/http/use-live-delivery.ts): stricter, the caller also joins for a
 * selection reaching one of these types, an abstract type or a field the
 * schema does not know.
 */
export function documentScope(schema: GraphQLSchema, text: string, callerRows?: ReadonlySet<string>): DocumentScope {
  const digest = createHash("sha256").update(text).digest("hex");
  let caller = CALLER_TEXT.test(text);
  let role = caller;
  let document;
  try {
    document = parse(text, { noLocation: true });
  } catch {
    return { digest, role: true, caller: true };
  }
  const typeInfo = new TypeInfo(schema);
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      Field() {
        const parent = typeInfo.getParentType();
        const field = typeInfo.getFieldDef();
        // Unsure (a field on an interface, one the schema does not know): keep the role.
        if (!parent || !field || !isObjectType(parent)) {
          role = true;
          if (callerRows) caller = true;
          return;
        }
        const dependence = answerDependence(field.extensions);
        if (dependence === "caller") caller = true;
        if (dependence) role = true;
        const { auth } = policyOf(field.extensions?.directives, parent.extensions?.directives);
        if (auth && ROLE_RANK[auth] > LOWEST_RANK) role = true;
        const named = getNamedType(field.type);
        if (isAbstractType(named)) {
          role = true;
          if (callerRows) caller = true;
        }
        if (callerRows?.has(named.name)) caller = true;
      },
    }),
  );
  return { digest, role: role || caller, caller };
}

/**
 * `documentScope` memoized by document text, for one schema. Yoga hands the
 * same printed string for the same parsed document, so a repeated document
 * costs one Map lookup. Bounded: past `max` documents the oldest is dropped.
 */
export function documentScopes(schema: GraphQLSchema, max = 1000): (text: string) => DocumentScope {
  const seen = new Map<string, DocumentScope>();
  return (text) => {
    let scope = seen.get(text);
    if (!scope) {
      scope = documentScope(schema, text);
      if (seen.size >= max) seen.delete(seen.keys().next().value!);
      seen.set(text, scope);
    }
    return scope;
  };
}
