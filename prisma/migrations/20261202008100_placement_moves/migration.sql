-- The journal of tenant moves (docs/placement.md, "Moving a tenant";
-- src/db/placement-move.ts): a row is written when a move starts (under the
-- tenant's move lock), marked `switched` in the switch's own transaction,
-- and removed once everything the move had to do is done. A row left
-- behind is a move that crashed, failed without undoing all it did (the old
-- copy's mark not undone), or switched without finishing (the old placement
-- not dropped, the new DATABASE copy's tenants row not made to name it):
-- the next move of the tenant, the server's start-up and its periodic sweep
-- settle it (`settleMoves`): with the directory row as it is then, the
-- placement it names is made to name itself, any other of the row's
-- placements is dropped. Names are never stored: they derive from the
-- tenant's id (and the server).
--
-- Not a tenant table: `tenant` is not a foreign key (a row outlives a purge,
-- whose leftovers it still names) and no role but the owner (the mover's
-- connections) may read or write it. Made in every placement too (they run
-- the same migrations); only the main database's is used.
CREATE TABLE "placement_moves" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "tenant" UUID NOT NULL,
    "from_placement" "Placement" NOT NULL,
    "from_server" TEXT,
    "to_placement" "Placement" NOT NULL,
    "to_server" TEXT,
    "state" TEXT NOT NULL DEFAULT 'started',
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "last_error" TEXT,

    CONSTRAINT "placement_moves_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "placement_moves_tenant_idx" ON "placement_moves"("tenant");

REVOKE ALL ON "placement_moves" FROM PUBLIC;
