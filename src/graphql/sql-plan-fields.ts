import { BREAK, isAbstractType, isObjectType, Kind, visit, type DocumentNode, type FieldNode, type FragmentDefinitionNode, type GraphQLObjectType, type GraphQLSchema, type SelectionSetNode } from "graphql";

/** How the SQL planner reads a document's selections (sql-plan-compile.ts). */

/** What collecting needs: the schema (type conditions) and the document's fragments. */
export interface Collecting {
  schema: GraphQLSchema;
  fragments: Record<string, FragmentDefinitionNode>;
}

const directiveFree = new WeakMap<DocumentNode, boolean>();

/** No directive anywhere in the document (@include, @skip or any other: executed as usual). */
export function noDirectives(document: DocumentNode): boolean {
  let free = directiveFree.get(document);
  if (free === undefined) {
    free = true;
    visit(document, {
      Directive() {
        free = false;
        return BREAK;
      },
    });
    directiveFree.set(document, free);
  }
  return free;
}

/**
 * The fields of selection sets on `type` by response key, as execution
 * collects them (CollectFields of the spec, without directives, which are
 * never planned): fragments whose type condition the type meets, each named
 * fragment once, fields of one key merged in order of first appearance.
 */
export function collect(s: Collecting, type: GraphQLObjectType, sets: readonly SelectionSetNode[]): Map<string, FieldNode[]> {
  const out = new Map<string, FieldNode[]>();
  const seen = new Set<string>();
  const applies = (name: string | undefined) => {
    if (name === undefined || name === type.name) return true;
    const cond = s.schema.getType(name);
    return !!cond && !isObjectType(cond) && (isAbstractType(cond) ? s.schema.isSubType(cond, type) : false);
  };
  const walk = (set: SelectionSetNode) => {
    for (const sel of set.selections) {
      if (sel.kind === Kind.FIELD) {
        const key = sel.alias?.value ?? sel.name.value;
        const list = out.get(key);
        if (list) list.push(sel);
        else out.set(key, [sel]);
      } else if (sel.kind === Kind.INLINE_FRAGMENT) {
        if (applies(sel.typeCondition?.name.value)) walk(sel.selectionSet);
      } else if (!seen.has(sel.name.value)) {
        seen.add(sel.name.value);
        const fragment = s.fragments[sel.name.value] ?? unknownFragment(sel.name.value);
        if (applies(fragment.typeCondition.name.value)) walk(fragment.selectionSet);
      }
    }
  };
  for (const set of sets) walk(set);
  return out;
}

/** The subfields of a field's nodes on `type`. */
export const collectSubfields = (s: Collecting, type: GraphQLObjectType, nodes: readonly FieldNode[]) =>
  collect(
    s,
    type,
    nodes.flatMap((n) => (n.selectionSet ? [n.selectionSet] : [])),
  );


function unknownFragment(name: string): never {
  throw new Error(`fragment ${name} is not in the document`);
}
