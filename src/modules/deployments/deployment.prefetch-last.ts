import { getNamedType, isObjectType, Kind, type FieldNode, type GraphQLObjectType, type GraphQLResolveInfo, type SelectionSetNode } from "graphql";

/**
 * When the dashboard's one data statement (deployment.prefetch.ts) is also
 * the operation's last, it goes with the COMMIT of the read transaction in
 * one message to PostgreSQL (docs/request-path.md, "The last statement").
 */

/** Fields answered from the page's rows (connection plumbing; prefetched with a plan). */
const FROM_ROWS = new Set(["__typename", "id", "edges", "node", "cursor", "pageInfo", "hasNextPage", "hasPreviousPage", "startCursor", "endCursor"]);
const PREFETCHED_FIELDS = new Set(["Project.deploymentCount", "Project.latestDeployment", "Project.deployments", "Deployment.createdBy"]);

/**
 * Whether the operation reads nothing more once the project page's
 * statement (with its plan) has answered: a query whose only root field is
 * this `projects` (and `__typename`), selecting below it only fields read
 * from the rows: exposed columns (Pothos' `expose`), ids, connection edges
 * and page info, and the prefetched subtree. No directive, no `totalCount`,
 * nothing else. A statement after all (a field this misjudged) opens the
 * request's transaction again, its facts re-checked (tenant-db.ts).
 */
export function readsNothingElse(info: GraphQLResolveInfo): boolean {
  if (info.operation.operation !== "query") return false;
  const roots = fieldsOf(info.operation.selectionSet, info);
  const key = (f: FieldNode) => f.alias?.value ?? f.name.value;
  if (!roots?.every((f) => f.name.value === "__typename" || (key(f) === info.path.key && f.name.value === info.fieldName))) return false;
  const rowsOnly = (type: GraphQLObjectType, set: SelectionSetNode | undefined): boolean => {
    const fields = fieldsOf(set, info);
    return !!fields?.every((f) => {
      const def = type.getFields()[f.name.value];
      if (f.name.value === "__typename") return true;
      if (!def || (f.arguments?.length && !PREFETCHED_FIELDS.has(`${type.name}.${def.name}`))) return false;
      const exposed = def.extensions?.pothosExposedField === def.name;
      if (!exposed && !FROM_ROWS.has(def.name) && !PREFETCHED_FIELDS.has(`${type.name}.${def.name}`)) return false;
      const named = getNamedType(def.type);
      return !f.selectionSet || (isObjectType(named) && rowsOnly(named, f.selectionSet));
    });
  };
  const projects = info.parentType.getFields()[info.fieldName];
  const connection = projects && getNamedType(projects.type);
  return isObjectType(connection) && info.fieldNodes.every((n) => rowsOnly(connection, n.selectionSet));
}

/** The fields of a selection set, through inline fragments and fragment spreads; null when a directive is in the way. */
export function fieldsOf(set: SelectionSetNode | undefined, info: GraphQLResolveInfo, out: FieldNode[] = []): FieldNode[] | null {
  for (const s of set?.selections ?? []) {
    if (s.directives?.length) return null;
    if (s.kind === Kind.FIELD) out.push(s);
    else {
      const sub = s.kind === Kind.INLINE_FRAGMENT ? s.selectionSet : info.fragments[s.name.value]?.selectionSet;
      if (!sub || !fieldsOf(sub, info, out)) return null;
    }
  }
  return out;
}
