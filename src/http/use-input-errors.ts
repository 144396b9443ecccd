import {
  coerceInputValue,
  getNullableType,
  getOperationAST,
  GraphQLError,
  isInputObjectType,
  isInputType,
  isListType,
  isNonNullType,
  typeFromAST,
  visit,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLInputType,
  type GraphQLSchema,
} from "graphql";
import type { Plugin } from "graphql-yoga";
import { AppError } from "../errors.ts";
import { keySegment, literalPath, refuse } from "./input-paths.ts";

/**
 * useInputErrors: the request's input errors graphql itself finds, answered
 * as every other bad input is (docs/http.md, "Bad input"): BAD_USER_INPUT,
 * HTTP 400, `field` the path of the value, the value never echoed
 * (review-1330 F6: no code, the values sent in the message, 200 or 400).
 *
 *  - a body without `query` (an automatic persisted query's hash alone:
 *    persisted queries are not served) is BAD_REQUEST on `query`, 400;
 *  - variables graphql (or graphql-jit) could not coerce: the errors are
 *    made again from the operation's variable definitions, one per value,
 *    `variables.<name>.<path>`, saying what was expected (a type, a known
 *    field, a value), not what came;
 *  - a literal a scalar refused with a coded error (DateTime's years,
 *    src/graphql/scalars.ts): that error, named by the literal's path.
 *
 * Only a failed request pays for the naming: the variables are coerced once
 * more when their first coercion failed, the document walked when a
 * validation error needs a path.
 */

const CODED = "BAD_USER_INPUT";

/** The type at `path` inside a variable's type (a list's item, an input object's field). */
function typeAt(type: GraphQLInputType, path: readonly (string | number)[]): GraphQLInputType | undefined {
  let at: GraphQLInputType | undefined = type;
  for (const segment of path) {
    const t: GraphQLInputType | undefined = at && getNullableType(at);
    if (t && isListType(t) && typeof segment === "number") at = t.ofType;
    else if (t && isInputObjectType(t) && typeof segment === "string") at = t.getFields()[segment]?.type;
    else return undefined;
  }
  return at;
}

const pathSuffix = (path: readonly (string | number)[]) => path.map((s) => (typeof s === "number" ? `[${s}]` : keySegment(s))).join("");

/** What was wrong, in words of the schema: graphql's own messages quote the value. */
function why(error: GraphQLError, type: GraphQLInputType | undefined): { key?: string; message: string } {
  if (error.extensions?.code === CODED) return { message: error.message };
  const unknown = /^Field "([^"]+)" is not defined by type "([^"]+)"/.exec(error.message);
  if (unknown) return { key: unknown[1], message: `is not a field of ${unknown[2]}` };
  const missing = /^Field "([^"]+)" of required type "([^"]+)" was not provided/.exec(error.message);
  if (missing) return { key: missing[1], message: `is required (${missing[2]})` };
  if (error.message.startsWith("Expected non-nullable type")) return { message: "must not be null" };
  return { message: `is not a valid ${type ? String(type) : "value"}` };
}

/** The coercion errors of the operation's variables, named and without their values; [] when they coerce. */
function variableErrors(schema: GraphQLSchema, document: DocumentNode, operationName: string | undefined, values: Record<string, unknown> | undefined): AppError[] {
  const errors: AppError[] = [];
  for (const def of getOperationAST(document, operationName)?.variableDefinitions ?? []) {
    const name = def.variable.name.value;
    const field = `variables${keySegment(name)}`;
    const type = typeFromAST(schema, def.type);
    // A variable of an unknown or output type is the validation's error.
    if (!type || !isInputType(type)) continue;
    if (!values || !Object.hasOwn(values, name)) {
      if (isNonNullType(type) && def.defaultValue === undefined) errors.push(refuse(field, `is required (${String(type)})`));
      continue;
    }
    coerceInputValue(values[name], type, (path, _value, error) => {
      const { key, message } = why(error, typeAt(type, path));
      errors.push(refuse(`${field}${pathSuffix(path)}${key === undefined ? "" : keySegment(key)}`, message));
    });
  }
  return errors;
}

/** A coded refusal of a literal (it carries the literal's node) named by the literal's path in the document. */
function namedLiteralError(document: DocumentNode, error: GraphQLError): GraphQLError {
  const target = error.nodes?.length === 1 ? error.nodes[0] : undefined;
  if (error.extensions?.code !== CODED || error.extensions.field !== undefined || !target) return error;
  let named: GraphQLError = error;
  visit(document, {
    enter(node, _key, parent, _path, ancestors) {
      if (node !== target) return undefined;
      named = refuse(literalPath(ancestors, parent, node), error.message);
      return false;
    },
  });
  return named;
}

export function useInputErrors(): Plugin {
  return {
    onParams({ params, setParams, setResult }) {
      if (!params || typeof params !== "object" || params.query != null) return;
      const message = params.extensions?.persistedQuery
        ? "query must be sent: persisted queries are not supported"
        : "query must be sent (the GraphQL document)";
      setResult({ errors: [new AppError("BAD_REQUEST", message, { field: "query" }, { status: 400, spec: false })] });
      // Yoga's own check of the params runs after every plugin's onParams,
      // answered or not, and would throw its "Must provide query string."
      // (200 under application/json); with this answer set, nothing parses
      // or runs the empty document.
      setParams({ ...params, query: "" });
    },
    onValidate({ params }) {
      return ({ result, setResult }) => {
        if (result.some((e) => e.extensions?.code === CODED && e.extensions.field === undefined)) {
          setResult(result.map((e) => namedLiteralError(params.documentAST, e)));
        }
      };
    },
    onExecute({ args }) {
      // Only an operation with variables can fail to coerce them: the others (a cached dashboard) pass no hook.
      if (!getOperationAST(args.document, args.operationName ?? undefined)?.variableDefinitions?.length) return;
      return {
        onExecuteDone({ result, setResult }) {
          if (Symbol.asyncIterator in (result as object)) return;
          const answer = result as ExecutionResult;
          // Variables that do not coerce: no execution, no data.
          if (answer.data !== undefined || !answer.errors?.length || answer.errors.some((e) => e instanceof AppError)) return;
          const refused = variableErrors(args.schema, args.document, args.operationName ?? undefined, args.variableValues ?? undefined);
          if (refused.length) setResult({ errors: refused });
        },
      };
    },
  };
}
