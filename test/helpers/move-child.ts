import { PlacementAdmin, placementFor, POOLED } from "../../src/db/placement-admin.ts";
import type { Placement } from "../../src/generated/prisma/enums.ts";
import { moveTenantRows } from "../../src/db/placement-move.ts";

/**
 * A mover in a process of its own, for tests that kill it mid-move
 * (test/integration/placement-move-crash.test.ts):
 *   node --import tsx test/helpers/move-child.ts <owner url> <tenant id> <from> <to>
 */
const [url, tenantId, from, to] = process.argv.slice(2) as [string, string, Placement, Placement];
const ref = (p: Placement) => (p === "POOLED" ? POOLED : placementFor(tenantId, p));
const move = await moveTenantRows(new PlacementAdmin(url), tenantId, ref(from), ref(to));
console.log(JSON.stringify({ rows: move.rows }));
