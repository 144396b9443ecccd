-- The response cache's per-tenant generation (docs/response-cache.md).
--
-- Cached query responses are keyed by the tenant's generation. Every
-- committed change of a tenant's data, members, roles, keys, status, plan or
-- limits bumps it IN THE SAME TRANSACTION (statement-level triggers below),
-- so the change and the new generation become visible together, before the
-- mutation is acknowledged, to every replica. The request reads the
-- generation in the message that opens its transaction, beside
-- app_request_facts (app_request_cache below): an entry cached under an
-- older generation is never addressed again (its TTL removes it).
--
-- Generations are drawn from one sequence: a value is never used twice, so
-- a generation that reads the same as an earlier one cannot happen (even for
-- two concurrent bumps, which serialize on the row; uniqueness, not order,
-- is what the key needs).
--
-- ttl_seconds: the tenant's override of its plan's cache TTL (NULL: the
-- plan's, from CACHE_TTL_FREE/PRO/ENTERPRISE; 0: until invalidated), set
-- with setTenantLimits(cacheTtlSeconds).

CREATE SEQUENCE "tenant_cache_generation_seq";

CREATE TABLE "tenant_cache_generations" (
  "tenant_id" UUID NOT NULL,
  "generation" BIGINT NOT NULL DEFAULT 0,
  "ttl_seconds" INTEGER,
  CONSTRAINT "tenant_cache_generations_pkey" PRIMARY KEY ("tenant_id"),
  CONSTRAINT "tenant_cache_generations_ttl_check" CHECK ("ttl_seconds" IS NULL OR "ttl_seconds" >= 0)
);
ALTER TABLE "tenant_cache_generations" ADD CONSTRAINT "tenant_cache_generations_tenant_id_fkey"
  FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Wall 2 as for every tenant table. The app role writes only its own
-- tenant's row (its triggers bump the generation of the tenant whose rows it
-- changed, which is always its own).
ALTER TABLE "tenant_cache_generations" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "tenant_cache_generations" FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON "tenant_cache_generations" TO tenantgraph_app
  USING (tenant_id = app_current_tenant())
  WITH CHECK (tenant_id = app_current_tenant());
CREATE POLICY platform_access ON "tenant_cache_generations" TO tenantgraph_platform USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE ON "tenant_cache_generations" TO tenantgraph_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON "tenant_cache_generations" TO tenantgraph_platform;
GRANT USAGE ON SEQUENCE "tenant_cache_generation_seq" TO tenantgraph_app, tenantgraph_platform;

-- Bumps the generation of each given tenant that still exists (a tenant
-- deleted in this transaction takes its row with it: ON DELETE CASCADE).
-- Sorted, so two transactions bumping the same tenants lock in one order.
CREATE FUNCTION app_bump_cache_generations(p_tenants uuid[]) RETURNS void
  LANGUAGE sql VOLATILE
  AS $$
    INSERT INTO "tenant_cache_generations" (tenant_id, generation)
    SELECT t, nextval('tenant_cache_generation_seq')
    FROM (SELECT DISTINCT t FROM unnest(p_tenants) AS u(t) WHERE t IS NOT NULL) s
    WHERE EXISTS (SELECT 1 FROM "tenants" x WHERE x.id = s.t)
    ORDER BY t
    ON CONFLICT (tenant_id) DO UPDATE SET generation = nextval('tenant_cache_generation_seq')
  $$;
GRANT EXECUTE ON FUNCTION app_bump_cache_generations(uuid[]) TO tenantgraph_app, tenantgraph_platform;

-- The statement-level trigger function. TG_ARGV[0] says which column names
-- the tenant: 'tenant_id' (tenant tables), 'id' (tenants), 'user' (users:
-- every tenant the changed users are members of). TG_ARGV[1], if any, is a
-- column whose change alone bumps nothing (api_keys.last_used_at: written on
-- a key's first use each minute; the field is never cached instead).
CREATE FUNCTION app_cache_changed() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
  DECLARE
    ids uuid[];
    done text := coalesce(current_setting('app.cache_bumped', true), '');
  BEGIN
    IF TG_ARGV[0] = 'tenant_id' THEN
      IF TG_OP = 'INSERT' THEN ids := ARRAY(SELECT tenant_id FROM new_rows);
      ELSIF TG_OP = 'DELETE' THEN ids := ARRAY(SELECT tenant_id FROM old_rows);
      ELSIF TG_NARGS > 1 THEN
        ids := ARRAY(SELECT n.tenant_id FROM new_rows n JOIN old_rows o ON o.tenant_id = n.tenant_id AND o.id = n.id
                     WHERE to_jsonb(n) - TG_ARGV[1] IS DISTINCT FROM to_jsonb(o) - TG_ARGV[1]);
      ELSE ids := ARRAY(SELECT tenant_id FROM new_rows UNION SELECT tenant_id FROM old_rows);
      END IF;
    ELSIF TG_ARGV[0] = 'id' THEN
      IF TG_OP = 'INSERT' THEN ids := ARRAY(SELECT id FROM new_rows);
      ELSE ids := ARRAY(SELECT id FROM new_rows UNION SELECT id FROM old_rows);
      END IF;
    ELSE
      ids := ARRAY(SELECT m.tenant_id FROM "memberships" m WHERE m.user_id IN (SELECT id FROM new_rows));
    END IF;
    -- A tenant this transaction has bumped already keeps its new generation:
    -- no one has seen it (it commits with every change of the transaction).
    -- The list is transaction-local, and a savepoint rolled back takes its
    -- entries with it, as it takes the bump.
    ids := ARRAY(SELECT DISTINCT x FROM unnest(ids) AS u(x) WHERE x IS NOT NULL AND position(x::text IN done) = 0);
    IF cardinality(ids) > 0 THEN
      PERFORM app_bump_cache_generations(ids);
      PERFORM set_config('app.cache_bumped', done || array_to_string(ids, ',') || ',', true);
    END IF;
    RETURN NULL;
  END
  $$;

-- Attaches the triggers to a table (a later migration adding a tenant table
-- calls it too; tenant-tables.test.ts checks that every tenant table has them).
CREATE FUNCTION app_track_cache(p_table regclass, p_column text, p_ignored_on_update text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql
  AS $$
  BEGIN
    EXECUTE format('CREATE TRIGGER cache_generation_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows
                      FOR EACH STATEMENT EXECUTE FUNCTION app_cache_changed(%L)', p_table, p_column);
    EXECUTE format('CREATE TRIGGER cache_generation_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                      FOR EACH STATEMENT EXECUTE FUNCTION app_cache_changed(%s)', p_table,
                   concat_ws(', ', quote_literal(p_column), quote_literal(p_ignored_on_update)));
    IF p_column = 'tenant_id' THEN
      EXECUTE format('CREATE TRIGGER cache_generation_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION app_cache_changed(%L)', p_table, p_column);
    END IF;
  END
  $$;

-- Every tenant table (every table of this schema with a tenant_id column,
-- whichever migration made it) but usage_counters (request counts flushed
-- every few seconds; the fields that read them, Query.usage and the
-- platform's statistics, are never cached) and this table itself; api_keys
-- without its last_used_at writes.
SELECT app_track_cache(c.oid::regclass, 'tenant_id', CASE c.relname WHEN 'api_keys' THEN 'last_used_at' END)
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
  AND c.relname NOT IN ('usage_counters', 'tenant_cache_generations')
ORDER BY c.relname;
-- Status, plan, name of the tenant (a deleted tenant's row goes with it).
SELECT app_track_cache('tenants'::regclass, 'id');
-- Names, e-mails and the platform-admin flag of members (insert: no member yet; delete: memberships cascade).
CREATE TRIGGER cache_generation_update AFTER UPDATE ON "users" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_cache_changed('user');

-- What the request's cache key needs, read in the message that opens the
-- request's transaction (after the settings, beside app_request_facts):
-- the generation (0 before the tenant's first change) and the TTL override.
-- SECURITY INVOKER: under row-level security it sees app.tenant_id's row only.
CREATE FUNCTION app_request_cache() RETURNS jsonb
  LANGUAGE sql STABLE
  AS $$
    SELECT jsonb_build_object(
      'generation', COALESCE((SELECT g.generation::text FROM "tenant_cache_generations" g WHERE g.tenant_id = app_current_tenant()), '0'),
      'ttl', (SELECT g.ttl_seconds FROM "tenant_cache_generations" g WHERE g.tenant_id = app_current_tenant()))
  $$;
REVOKE ALL ON FUNCTION app_request_cache() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_request_cache() TO tenantgraph_app;
