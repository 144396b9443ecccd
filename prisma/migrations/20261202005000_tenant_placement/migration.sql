-- Tenant placement (docs/placement.md): where a tenant's rows live.
--   POOLED    the shared tables of the main database (row-level security)
--   SCHEMA    a PostgreSQL schema of its own in the main database
--   DATABASE  a database of its own, on the main server ("default") or on a
--             server named in PLACEMENT_DATABASE_URLS
-- Every placement runs these same migrations (roles, grants, RLS): the
-- columns exist there too, and stay at their defaults (only the main
-- database's `tenants` row is the directory entry that routes requests).
CREATE TYPE "Placement" AS ENUM ('POOLED', 'SCHEMA', 'DATABASE');

ALTER TABLE "tenants"
  ADD COLUMN "placement" "Placement" NOT NULL DEFAULT 'POOLED',
  -- The server of a DATABASE placement ('default': the main one); NULL otherwise.
  ADD COLUMN "placement_server" TEXT,
  -- The schema (SCHEMA) or database (DATABASE) name; NULL for POOLED.
  ADD COLUMN "placement_name" TEXT,
  ADD CONSTRAINT "tenants_placement_complete" CHECK (
    ("placement" = 'POOLED' AND "placement_name" IS NULL AND "placement_server" IS NULL)
    OR ("placement" = 'SCHEMA' AND "placement_name" ~ '^tenant_[0-9a-f]{32}$' AND "placement_server" IS NULL)
    OR ("placement" = 'DATABASE' AND "placement_name" ~ '^tg_tenant_[0-9a-f]{32}$' AND "placement_server" ~ '^[a-z][a-z0-9_-]{0,39}$'));
