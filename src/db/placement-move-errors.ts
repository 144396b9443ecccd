import { placementKey, type PlacementRef } from "./placement-admin.ts";

/** How a move of a tenant ends without moving it (placement.service.ts turns them into TENANT_MOVING). */

/** Another move of the tenant holds its move lock: this one did nothing (moveTenant answers TENANT_MOVING). */
export class MoveInProgress extends Error {
  constructor(tenantId: string) {
    super(`another move of the tenant ${tenantId} is under way`);
  }
}

/** The copy differs from the snapshot it was made from: the move was rolled back. */
export class MoveVerificationFailed extends Error {
  constructor(
    tenantId: string,
    to: PlacementRef,
    readonly tables: string[],
  ) {
    super(`move of ${tenantId} to ${placementKey(to)}: ${tables.join(", ")} differ after the copy; rolled back`);
  }
}

/**
 * The move was given up before the switch because the tenant could have
 * changed under it (its write fence lost, a write past the fence): the
 * target was discarded, the tenant is where it was, with every row, and the
 * move may simply be repeated (moveTenant answers TENANT_MOVING).
 */
export class MoveAbandoned extends Error {
  constructor(reason: string) {
    super(`${reason}; the move was abandoned, the tenant is where it was`);
  }
}
