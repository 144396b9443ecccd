import { readFileSync } from "node:fs";
import path from "node:path";

/**
 * A small reader of prisma/schema.prisma: just what the schema-vs-database
 * test needs (table and column names, keys, indexes, relations). The test
 * cross-checks it against the generated datamodel, so a parsing mistake
 * fails loudly instead of hiding a difference.
 */

export const SCHEMA_PATH = path.resolve(import.meta.dirname, "../../prisma/schema.prisma");

export interface IndexColumn {
  field: string;
  desc: boolean;
}

export interface ParsedField {
  name: string;
  column: string;
  type: string;
  optional: boolean;
  list: boolean;
  /** Field attributes, e.g. { id: "", unique: "", map: '"x"', db.Uuid: "", default: "now()" } */
  attrs: Map<string, string>;
  relation?: { fields: string[]; references: string[]; onDelete?: string; onUpdate?: string };
}

export interface ParsedModel {
  name: string;
  table: string;
  fields: ParsedField[];
  /** Primary key fields, in order. */
  id: string[];
  uniques: string[][];
  indexes: IndexColumn[][];
}

export interface ParsedSchema {
  models: Map<string, ParsedModel>;
  enums: Map<string, string[]>;
}

/** Splits on commas outside brackets, parentheses and quotes. */
function splitTop(s: string, sep = ","): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let cur = "";
  for (const ch of s) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && (ch === "(" || ch === "[")) depth++;
    if (!quoted && (ch === ")" || ch === "]")) depth--;
    if (!quoted && depth === 0 && ch === sep) {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** `@name(args) @other` -> [["name","args"],["other",""]]; handles nested parentheses. */
function parseAttributes(s: string, marker: "@" | "@@"): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let i = 0;
  while (i < s.length) {
    if (s.startsWith(marker, i) && (marker === "@@" || s[i + 1] !== "@")) {
      i += marker.length;
      const m = /^[A-Za-z_][\w.]*/.exec(s.slice(i))!;
      const name = m[0];
      i += name.length;
      let args = "";
      if (s[i] === "(") {
        let depth = 0;
        let quoted = false;
        const start = i + 1;
        for (; i < s.length; i++) {
          const ch = s[i];
          if (ch === '"') quoted = !quoted;
          if (quoted) continue;
          if (ch === "(") depth++;
          if (ch === ")" && --depth === 0) break;
        }
        args = s.slice(start, i);
        i++;
      }
      out.push([name, args]);
    } else i++;
  }
  return out;
}

/** `[a, b(sort: Desc)]` or `fields: [a, b], name: "x"` -> index columns. */
function parseFieldList(args: string): IndexColumn[] {
  const list = /\[([^\]]*)\]/.exec(args);
  if (!list) throw new Error(`no field list in (${args})`);
  return splitTop(list[1]!).map((item) => {
    const m = /^(\w+)(?:\((.*)\))?$/.exec(item.trim());
    if (!m) throw new Error(`cannot parse index column ${item}`);
    return { field: m[1]!, desc: /sort:\s*Desc/.test(m[2] ?? "") };
  });
}

function namedList(args: string, key: string): string[] | undefined {
  const m = new RegExp(`${key}\\s*:\\s*\\[([^\\]]*)\\]`).exec(args);
  return m ? splitTop(m[1]!).map((s) => s.trim()) : undefined;
}

const stripComment = (line: string) => {
  let quoted = false;
  for (let i = 0; i < line.length - 1; i++) {
    if (line[i] === '"') quoted = !quoted;
    if (!quoted && line[i] === "/" && line[i + 1] === "/") return line.slice(0, i);
  }
  return line;
};

const unquote = (s: string) => JSON.parse(s.trim()) as string;

export function parsePrismaSchema(source = readFileSync(SCHEMA_PATH, "utf8")): ParsedSchema {
  const models = new Map<string, ParsedModel>();
  const enums = new Map<string, string[]>();
  const blockRe = /^(model|enum)\s+(\w+)\s*\{([\s\S]*?)^\}/gm;
  for (const block of source.matchAll(blockRe)) {
    const [, kind, name, body] = block as unknown as [string, string, string, string];
    const lines = body.split("\n").map(stripComment).map((l) => l.trim()).filter(Boolean);
    if (kind === "enum") {
      enums.set(name, lines.filter((l) => !l.startsWith("@@")).map((l) => l.split(/\s+/)[0]!));
      continue;
    }
    const model: ParsedModel = { name, table: name, fields: [], id: [], uniques: [], indexes: [] };
    for (const line of lines) {
      if (line.startsWith("@@")) {
        for (const [attr, args] of parseAttributes(line, "@@")) {
          if (attr === "map") model.table = unquote(args);
          else if (attr === "id") model.id = parseFieldList(args).map((c) => c.field);
          else if (attr === "unique") model.uniques.push(parseFieldList(args).map((c) => c.field));
          else if (attr === "index") model.indexes.push(parseFieldList(args));
          else throw new Error(`model ${name}: unsupported block attribute @@${attr}`);
        }
        continue;
      }
      const m = /^(\w+)\s+(\w+)(\[\])?(\?)?\s*(.*)$/.exec(line);
      if (!m) throw new Error(`model ${name}: cannot parse field line: ${line}`);
      const [, fieldName, type, list, optional, rest] = m as unknown as [string, string, string, string, string, string];
      const attrs = new Map(parseAttributes(rest, "@"));
      const field: ParsedField = {
        name: fieldName,
        column: attrs.has("map") ? unquote(attrs.get("map")!) : fieldName,
        type,
        list: Boolean(list),
        optional: Boolean(optional),
        attrs,
      };
      if (attrs.has("relation")) {
        const args = attrs.get("relation")!;
        const fields = namedList(args, "fields");
        const references = namedList(args, "references");
        if (fields && references) {
          field.relation = {
            fields,
            references,
            onDelete: /onDelete:\s*(\w+)/.exec(args)?.[1],
            onUpdate: /onUpdate:\s*(\w+)/.exec(args)?.[1],
          };
        }
      }
      if (attrs.has("id")) model.id = [fieldName];
      if (attrs.has("unique")) model.uniques.push([fieldName]);
      model.fields.push(field);
    }
    models.set(name, model);
  }
  return { models, enums };
}

export const isRelationField = (schema: ParsedSchema, f: ParsedField) => schema.models.has(f.type);
