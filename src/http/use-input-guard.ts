import { Kind, type ASTNode, type ASTVisitor, type ValidationContext } from "graphql";
import type { Plugin } from "graphql-yoga";
import { AppError } from "../errors.ts";
import { keySegment, literalPath, refuse, type Ancestors, type Parent } from "./input-paths.ts";

/**
 * useInputGuard: what a hostile request's *values* meet before anything
 * walks them (graphql's coercion, the JSON scalar, the audit redaction,
 * Prisma and PostgreSQL all recurse, and PostgreSQL refuses NUL and unpaired
 * surrogates with an error that would surface as INTERNAL_SERVER_ERROR):
 *
 *  - variables (and `extensions`), walked iteratively right after the body is
 *    parsed: nesting deeper than `maxVariableDepth` or more than
 *    `maxVariableValues` values is BAD_USER_INPUT (HTTP 400) naming the
 *    variable; a string or object key holding U+0000 or an unpaired
 *    surrogate is BAD_USER_INPUT with the path of the value
 *    (`variables.input.config.steps[2]`);
 *  - the document text, scanned before parsing (graphql's parser recurses on
 *    nested lists and objects): bracket nesting deeper than
 *    `maxDocumentNesting` is QUERY_TOO_COMPLEX (400); an unpaired surrogate,
 *    raw or escaped, is BAD_USER_INPUT on `query`;
 *  - literals in the parsed document, while validating: a string holding
 *    U+0000, or a list/object literal nested deeper than `maxVariableDepth`,
 *    is BAD_USER_INPUT (HTTP 400) with the argument's path
 *    (`createProject.input.name`).
 *
 * The offending value itself is never echoed.
 */
export interface InputGuardOptions {
  /** Deepest nesting of lists/objects in a variable or literal value. @default 32 */
  maxVariableDepth?: number;
  /** Values (scalars, lists, objects) across all variables of one operation. @default 10000 */
  maxVariableValues?: number;
  /** Deepest `{` `[` `(` nesting in the document text. @default 64 */
  maxDocumentNesting?: number;
}

const INPUT_GUARD_DEFAULTS = { maxVariableDepth: 32, maxVariableValues: 10_000, maxDocumentNesting: 64 } as const;

const NUL = "\u0000";
const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why a string is refused, or null. */
function badString(s: string): string | null {
  if (s.includes(NUL)) return "contains a NUL character (U+0000), which is not allowed";
  if (UNPAIRED_SURROGATE.test(s)) return "contains an unpaired UTF-16 surrogate (not valid Unicode)";
  return null;
}

interface Visit {
  value: unknown;
  depth: number;
  parent: Visit | null;
  segment: string;
}

const pathOf = (v: Visit) => {
  const segments: string[] = [];
  for (let at: Visit | null = v; at; at = at.parent) segments.push(at.segment);
  return segments.reverse().join("");
};

/** Checks a parsed JSON value without recursion; the first problem as an error, or null. */
function checkValue(root: unknown, name: string, limits: { maxDepth: number; maxValues: number }): AppError | null {
  const stack: Visit[] = [{ value: root, depth: 0, parent: null, segment: name }];
  let count = 0;
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (++count > limits.maxValues) return refuse(name, `holds more than ${limits.maxValues} values`);
    const { value } = v;
    if (typeof value === "string") {
      const why = badString(value);
      if (why) return refuse(pathOf(v), why);
    } else if (value !== null && typeof value === "object") {
      if (v.depth > limits.maxDepth) {
        // Named by the variable it is in: the whole path would be as long as the nesting.
        let top = v;
        while (top.parent?.parent) top = top.parent;
        return refuse(pathOf(top), `is nested deeper than ${limits.maxDepth} levels`);
      }
      if (Array.isArray(value)) {
        for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], depth: v.depth + 1, parent: v, segment: `[${i}]` });
      } else {
        const keys = Object.keys(value);
        for (let i = keys.length - 1; i >= 0; i--) {
          const key = keys[i]!;
          const why = badString(key);
          const child: Visit = { value: (value as Record<string, unknown>)[key], depth: v.depth + 1, parent: v, segment: keySegment(key) };
          if (why) return refuse(pathOf(child), `has a key that ${why}`);
          stack.push(child);
        }
      }
    }
  }
  return null;
}

const OPEN = new Set(["{", "[", "("]);
const CLOSE = new Set(["}", "]", ")"]);
const hex4 = (s: string, at: number) => (/^[0-9A-Fa-f]{4}$/.test(s.slice(at, at + 4)) ? parseInt(s.slice(at, at + 4), 16) : -1);
const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/**
 * Scans a document's text without parsing it: the deepest bracket nesting
 * outside strings and comments, and whether a string escapes an unpaired
 * surrogate (`"\ud800"`, which graphql's parser would refuse as a syntax
 * error). Malformed strings are left to the parser.
 */
function scanDocument(q: string, maxNesting: number): "too-deep" | "bad-escape" | null {
  let depth = 0;
  for (let i = 0; i < q.length; i++) {
    const ch = q[i]!;
    if (ch === "#") {
      while (i < q.length && q[i] !== "\n" && q[i] !== "\r") i++;
    } else if (ch === '"') {
      if (q.startsWith('"""', i)) {
        // Block strings have no escapes but \""".
        for (i += 3; i < q.length && !q.startsWith('"""', i); i++) if (q.startsWith('\\"""', i)) i += 3;
        i += 2;
        continue;
      }
      for (i++; i < q.length && q[i] !== '"' && q[i] !== "\n"; i++) {
        if (q[i] !== "\\") continue;
        i++;
        if (q[i] !== "u") continue;
        if (q[i + 1] === "{") {
          const end = q.indexOf("}", i);
          const code = end > 0 ? parseInt(q.slice(i + 2, end), 16) : NaN;
          if (isHigh(code) || isLow(code)) return "bad-escape";
          continue;
        }
        const code = hex4(q, i + 1);
        if (isLow(code)) return "bad-escape";
        if (isHigh(code)) {
          if (!(q[i + 5] === "\\" && q[i + 6] === "u" && isLow(hex4(q, i + 7)))) return "bad-escape";
          i += 10;
        } else {
          i += 4;
        }
      }
    } else if (OPEN.has(ch)) {
      if (++depth > maxNesting) return "too-deep";
    } else if (CLOSE.has(ch)) {
      depth--;
    }
  }
  return null;
}

function literalRule(maxDepth: number) {
  return (context: ValidationContext): ASTVisitor => {
    const isNesting = (a: Parent) => !!a && !Array.isArray(a) && ((a as ASTNode).kind === Kind.LIST || (a as ASTNode).kind === Kind.OBJECT);
    const tooDeep = (node: ASTNode, _key: unknown, parent: Parent, _path: unknown, ancestors: Ancestors) => {
      // The literal itself is one level: `[[1]]` is 2 deep, like the variable value [[1]].
      if ([...ancestors, parent].filter(isNesting).length < maxDepth) return undefined;
      context.reportError(refuse(literalPath(ancestors, parent, node, true), `is nested deeper than ${maxDepth} levels`));
      return false;
    };
    return {
      ListValue: tooDeep,
      ObjectValue: tooDeep,
      StringValue(node, _key, parent, _path, ancestors) {
        const why = badString(node.value);
        if (why) context.reportError(refuse(literalPath(ancestors, parent, node), why));
      },
    };
  };
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`useInputGuard: ${name} must be a positive integer, got ${value}`);
  return value;
}

export function useInputGuard(options: InputGuardOptions = {}): Plugin {
  const maxDepth = positive("maxVariableDepth", options.maxVariableDepth ?? INPUT_GUARD_DEFAULTS.maxVariableDepth);
  const maxValues = positive("maxVariableValues", options.maxVariableValues ?? INPUT_GUARD_DEFAULTS.maxVariableValues);
  const maxNesting = positive("maxDocumentNesting", options.maxDocumentNesting ?? INPUT_GUARD_DEFAULTS.maxDocumentNesting);
  const rule = literalRule(maxDepth);
  return {
    onParams({ params, setResult }) {
      // Yoga's own check of the params' shape answers a batch item that is not an object.
      if (!params || typeof params !== "object") return;
      const refused =
        checkValue(params.variables ?? null, "variables", { maxDepth, maxValues }) ??
        checkValue(params.extensions ?? null, "extensions", { maxDepth, maxValues });
      if (refused) return setResult({ errors: [refused] });
      if (typeof params.query !== "string") return;
      if (UNPAIRED_SURROGATE.test(params.query)) return setResult({ errors: [refuse("query", badString("\ud800")!)] });
      const scan = scanDocument(params.query, maxNesting);
      if (scan === "bad-escape") return setResult({ errors: [refuse("query", "escapes an unpaired UTF-16 surrogate (not valid Unicode)")] });
      if (scan === "too-deep") {
        const error = new AppError("QUERY_TOO_COMPLEX", `Nesting limit of ${maxNesting} exceeded (brackets in the document)`, {}, { status: 400 });
        return setResult({ errors: [error] });
      }
    },
    onValidate({ addValidationRule }) {
      addValidationRule(rule);
    },
  };
}
