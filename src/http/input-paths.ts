import { Kind, type ASTNode } from "graphql";
import { AppError } from "../errors.ts";

/**
 * How a refused value is named (src/http/use-input-guard.ts,
 * src/http/use-input-errors.ts): `variables.input.config.steps[2]` for a
 * variable's value, `createProject.input.name` for a literal; the value
 * itself is never echoed.
 */

// A 400 wherever it is found: before parsing, or while validating the parsed
// document (where GraphQL over HTTP would answer 200 under application/json).
export const refuse = (field: string, message: string) =>
  new AppError("BAD_USER_INPUT", `${field} ${message}`, { field }, { status: 400, spec: false });

/** A path segment for an object key: `.name` when it is a plain name, else a quoted, escaped, shortened key. */
export function keySegment(key: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key)) return `.${key}`;
  const shown = key.length > 32 ? `${key.slice(0, 32)}...` : key;
  // JSON.stringify escapes NUL and unpaired surrogates as \uXXXX.
  return `[${JSON.stringify(shown)}]`;
}

export type Ancestors = readonly (ASTNode | readonly ASTNode[])[];
export type Parent = ASTNode | readonly ASTNode[] | undefined;

/** `createProject.input.name`-style path of a literal, from its ancestors and parent in the document. */
export function literalPath(ancestors: Ancestors, parent: Parent, node: ASTNode, upToArgument = false): string {
  let nodes = [...ancestors, parent].filter((a): a is ASTNode => !!a && !Array.isArray(a));
  nodes.push(node);
  // For over-deep values: the argument (like `variables.c` for a variable), not a path as long as the nesting.
  if (upToArgument) nodes = nodes.slice(0, nodes.findIndex((n) => n.kind === Kind.LIST || n.kind === Kind.OBJECT));
  let path = "";
  nodes.forEach((n, i) => {
    if (n.kind === Kind.FIELD) path += `${path ? "." : ""}${(n.alias ?? n.name).value}`;
    else if (n.kind === Kind.ARGUMENT || n.kind === Kind.OBJECT_FIELD) path += `${path ? "." : ""}${n.name.value}`;
    else if (n.kind === Kind.VARIABLE_DEFINITION) path += `${path ? "." : ""}$${n.variable.name.value}`;
    else if (n.kind === Kind.LIST && nodes[i + 1]) path += `[${n.values.findIndex((v) => v === nodes[i + 1])}]`;
  });
  return path || "query";
}

