import type { PlacementRef } from "./placement-admin.ts";

/**
 * Where a tenants row says its tenant lives: the placement columns read as a
 * route (which every request's facts confirm, docs/placement.md "Routing"),
 * and written by name when a move switches (docs/placement.md, "Moving a tenant").
 */

/** The route PostgreSQL reports for a tenant's rows (facts `route`), as a placement names it. */
export const routeOf = (ref: PlacementRef) => [ref.placement, ref.server, ref.name].filter(Boolean).join(":");

/** The same, as SQL over a tenants row: `POOLED`, `SCHEMA:<name>`, `DATABASE:<server>:<name>` (two databases of one name on two servers differ). */
export const ROUTE_SQL = `placement::text || coalesce(':' || placement_server, '') || coalesce(':' || placement_name, '')`;

/** The directory row (or a copy's tenants row) made to name a placement. */
export const NAME_SQL = (schema: string | null = null) =>
  `UPDATE ${schema ? `"${schema}".` : ""}tenants SET placement = $2, placement_server = $3, placement_name = $4 WHERE id = $1`;
export const nameParams = (tenantId: string, ref: PlacementRef) => [tenantId, ref.placement, ref.server, ref.name];
