import { EnvelopArmorPlugin } from "@escape.tech/graphql-armor";
import {
  NoSchemaIntrospectionCustomRule,
  type GraphQLError,
  type ValidationContext,
} from "graphql";
import type { Plugin, YogaInitialContext } from "graphql-yoga";
import { queryTooComplex } from "../errors.ts";

/**
 * useQueryLimits: the limits a hostile document meets before anything runs —
 * tokens (while parsing), then depth, aliases, directives and cost (while
 * validating), all from graphql-armor; every rejection is QUERY_TOO_COMPLEX.
 * Also where introspection and "Did you mean ...?" suggestions are switched
 * off, since both help an attacker map the schema. Batching is limited by
 * Yoga itself (`batching.limit` in src/app.ts).
 * Values (variables and literals: depth, size, NUL, unpaired surrogates)
 * are src/http/use-input-guard.ts's.
 */
export interface QueryLimitsOptions {
  /** Deepest selection set, counted from the operation. @default 12 */
  maxDepth?: number;
  /** Aliased fields per operation (`__typename` aliases are free). @default 30 */
  maxAliases?: number;
  /** Lexer tokens per document, counted before parsing completes. @default 5000 */
  maxTokens?: number;
  /** Directive uses per operation. @default 50 */
  maxDirectives?: number;
  /**
   * Armor's static cost: objects 2, scalars 1, ×1.5 per level, × a literal
   * `first`/`last` literal. The benchmark's dashboard query costs ~13,800 at
   * 20 projects and ~69,000 at 100 (the largest page); 100 projects × 100
   * deployments each costs ~834,000.
   * @default 100000
   */
  maxCost?: number;
  /** Answer `__schema` and `__type`. @default true */
  introspection?: boolean;
  /** Strip "Did you mean ...?" from validation errors. @default false */
  blockFieldSuggestions?: boolean;
}

export const QUERY_LIMIT_DEFAULTS = {
  maxDepth: 12,
  maxAliases: 30,
  maxTokens: 5000,
  maxDirectives: 50,
  maxCost: 100_000,
} as const;

/** Armor's messages start with "Syntax Error: " whatever the limit: drop it. */
const reject = (ctx: ValidationContext | null, error: GraphQLError) => {
  const converted = queryTooComplex(error.message.replace(/^Syntax Error: /, ""));
  // The token limit runs inside the parser, where there is no validation
  // context: throwing makes the parse fail with our error.
  if (!ctx) throw converted;
  ctx.reportError(converted);
};

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`useQueryLimits: ${name} must be a positive integer, got ${value}`);
  return value;
}

export function useQueryLimits(options: QueryLimitsOptions = {}): Plugin {
  const limits = { ...QUERY_LIMIT_DEFAULTS, ...options };
  const callbacks = { onReject: [reject], propagateOnRejection: false };
  const armor = EnvelopArmorPlugin<YogaInitialContext>({
    maxTokens: { n: positive("maxTokens", limits.maxTokens), ...callbacks },
    maxDepth: { n: positive("maxDepth", limits.maxDepth), ...callbacks },
    maxAliases: { n: positive("maxAliases", limits.maxAliases), ...callbacks },
    maxDirectives: { n: positive("maxDirectives", limits.maxDirectives), ...callbacks },
    costLimit: { maxCost: positive("maxCost", limits.maxCost), ...callbacks },
    blockFieldSuggestion: { enabled: options.blockFieldSuggestions ?? false },
  });
  const introspection = options.introspection ?? true;
  return {
    onPluginInit({ addPlugin }) {
      addPlugin(armor);
    },
    onValidate({ addValidationRule }) {
      if (!introspection) addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}
