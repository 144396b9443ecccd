-- Per-tenant counters for platform analytics (docs/placement.md, "Platform
-- analytics"; issue 15 point 7): `platform.tenantUsage` and `platform.totals`
-- read one row per tenant instead of counting every tenant's rows.
--
-- Kept exact, in the SAME transaction as the change: statement-level AFTER
-- triggers (transition tables: one counter update per statement and tenant,
-- however many rows a bulk INSERT carries) on memberships, projects,
-- workflows, deployments (INSERT, DELETE, and UPDATE for a status change) and
-- usage_counters (the API request rows, API_REQUESTS_PER_MINUTE: their
-- `count` summed). A counter therefore commits or rolls back with the rows it
-- counts: no lag.
--
-- Contention: the counter row of a tenant is updated by every statement that
-- changes the tenant's counted rows, so two concurrent transactions of ONE
-- tenant that both write counted rows serialize on that row from the
-- statement to the COMMIT (different tenants never wait for each other). A
-- statement that touches several tenants (the request counter's flush, a
-- platform bulk change) locks their rows in tenant_id order first, so two of
-- them cannot deadlock on the counters.
--
-- Who writes: nobody but the triggers. The trigger functions are SECURITY
-- DEFINER (the table owner) with a pinned search_path; tenantgraph_app may
-- only read its own tenant's row, tenantgraph_platform reads every row; no
-- role of the server may INSERT, UPDATE or DELETE the counters.
--
-- Copies between placements (src/db/placement-rows.ts beginCopy) run with
-- session_replication_role = replica, where these triggers do not fire (like
-- every ordinary trigger): the copying code recounts the tenant with
-- app_tenant_stats_recount() in the copy's transaction, after the rows are
-- written (a counters row is never copied: it is derived, and copying it
-- beside triggers would count twice).

CREATE TABLE "tenant_stats" (
  "tenant_id" UUID NOT NULL,
  "members" INTEGER NOT NULL DEFAULT 0,
  "projects" INTEGER NOT NULL DEFAULT 0,
  "workflows" INTEGER NOT NULL DEFAULT 0,
  "deployments" INTEGER NOT NULL DEFAULT 0,
  "deployments_queued" INTEGER NOT NULL DEFAULT 0,
  "deployments_building" INTEGER NOT NULL DEFAULT 0,
  "deployments_ready" INTEGER NOT NULL DEFAULT 0,
  "deployments_error" INTEGER NOT NULL DEFAULT 0,
  "deployments_canceled" INTEGER NOT NULL DEFAULT 0,
  "api_requests" BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT "tenant_stats_pkey" PRIMARY KEY ("tenant_id")
);
ALTER TABLE "tenant_stats" ADD CONSTRAINT "tenant_stats_tenant_id_fkey"
  FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
-- tenantUsage sorts by any of these (keyset on (metric, tenant_id), either
-- direction): a page is an index scan of the first `first` rows.
CREATE INDEX "tenant_stats_members_tenant_id_idx" ON "tenant_stats"("members", "tenant_id");
CREATE INDEX "tenant_stats_projects_tenant_id_idx" ON "tenant_stats"("projects", "tenant_id");
CREATE INDEX "tenant_stats_workflows_tenant_id_idx" ON "tenant_stats"("workflows", "tenant_id");
CREATE INDEX "tenant_stats_deployments_tenant_id_idx" ON "tenant_stats"("deployments", "tenant_id");
CREATE INDEX "tenant_stats_api_requests_tenant_id_idx" ON "tenant_stats"("api_requests", "tenant_id");

ALTER TABLE "tenant_stats" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "tenant_stats" FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON "tenant_stats" FOR SELECT TO tenantgraph_app
  USING (tenant_id = app_current_tenant());
-- Read-only by grant (below); the owner, a member of this role, passes RLS here for the triggers' writes.
CREATE POLICY platform_access ON "tenant_stats" TO tenantgraph_platform USING (true) WITH CHECK (true);
REVOKE ALL ON "tenant_stats" FROM PUBLIC;
GRANT SELECT ON "tenant_stats" TO tenantgraph_app, tenantgraph_platform;

-- The functions below are made with this schema pinned (a SCHEMA placement
-- runs this migration with its own schema as search_path), temporary objects
-- last, so a caller's temporary table cannot stand in for a table here.
DO $$
BEGIN
  -- Adds the deltas (one tenant_stats row per tenant: the amounts to add) to
  -- the counters, locking the tenants' rows in tenant_id order first. A
  -- tenant without a counters row (deleted in this transaction: its row went
  -- with it) is skipped.
  EXECUTE format($fn$
    CREATE FUNCTION app_tenant_stats_add(p_deltas "tenant_stats"[]) RETURNS void
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      BEGIN
        IF cardinality(p_deltas) = 0 THEN
          RETURN;
        END IF;
        IF cardinality(p_deltas) > 1 THEN
          PERFORM 1 FROM tenant_stats s WHERE s.tenant_id IN (SELECT d.tenant_id FROM unnest(p_deltas) d)
            ORDER BY s.tenant_id FOR NO KEY UPDATE;
        END IF;
        UPDATE tenant_stats s SET
          members = s.members + d.members,
          projects = s.projects + d.projects,
          workflows = s.workflows + d.workflows,
          deployments = s.deployments + d.deployments,
          deployments_queued = s.deployments_queued + d.deployments_queued,
          deployments_building = s.deployments_building + d.deployments_building,
          deployments_ready = s.deployments_ready + d.deployments_ready,
          deployments_error = s.deployments_error + d.deployments_error,
          deployments_canceled = s.deployments_canceled + d.deployments_canceled,
          api_requests = s.api_requests + d.api_requests
        FROM (
          SELECT x.tenant_id, sum(x.members)::int AS members, sum(x.projects)::int AS projects, sum(x.workflows)::int AS workflows,
            sum(x.deployments)::int AS deployments, sum(x.deployments_queued)::int AS deployments_queued,
            sum(x.deployments_building)::int AS deployments_building, sum(x.deployments_ready)::int AS deployments_ready,
            sum(x.deployments_error)::int AS deployments_error, sum(x.deployments_canceled)::int AS deployments_canceled,
            sum(x.api_requests)::bigint AS api_requests
          FROM unnest(p_deltas) x GROUP BY x.tenant_id
        ) d
        WHERE s.tenant_id = d.tenant_id
          AND (d.members, d.projects, d.workflows, d.deployments, d.deployments_queued, d.deployments_building,
               d.deployments_ready, d.deployments_error, d.deployments_canceled, d.api_requests)
              IS DISTINCT FROM (0, 0, 0, 0, 0, 0, 0, 0, 0, 0::bigint);
      END
      $body$
  $fn$, current_schema());

  -- memberships, projects, workflows: TG_ARGV[0] names the counter; one row
  -- counts one.
  EXECUTE format($fn$
    CREATE FUNCTION app_tenant_stats_rows() RETURNS trigger
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      DECLARE
        deltas tenant_stats[];
      BEGIN
        IF TG_OP = 'INSERT' THEN
          deltas := ARRAY(SELECT ROW(r.tenant_id,
              CASE TG_ARGV[0] WHEN 'members' THEN r.n ELSE 0 END, CASE TG_ARGV[0] WHEN 'projects' THEN r.n ELSE 0 END,
              CASE TG_ARGV[0] WHEN 'workflows' THEN r.n ELSE 0 END, 0, 0, 0, 0, 0, 0, 0)::tenant_stats
            FROM (SELECT tenant_id, count(*)::int AS n FROM new_rows GROUP BY tenant_id) r);
        ELSE
          deltas := ARRAY(SELECT ROW(r.tenant_id,
              CASE TG_ARGV[0] WHEN 'members' THEN -r.n ELSE 0 END, CASE TG_ARGV[0] WHEN 'projects' THEN -r.n ELSE 0 END,
              CASE TG_ARGV[0] WHEN 'workflows' THEN -r.n ELSE 0 END, 0, 0, 0, 0, 0, 0, 0)::tenant_stats
            FROM (SELECT tenant_id, count(*)::int AS n FROM old_rows GROUP BY tenant_id) r);
        END IF;
        PERFORM app_tenant_stats_add(deltas);
        RETURN NULL;
      END
      $body$
  $fn$, current_schema());

  -- deployments: the total and one counter per status; an UPDATE moves a
  -- row from its old status's counter to its new one (rows whose status and
  -- tenant did not change add nothing).
  EXECUTE format($fn$
    CREATE FUNCTION app_tenant_stats_deployments() RETURNS trigger
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      DECLARE
        added tenant_stats[] := '{}';
        removed tenant_stats[] := '{}';
      BEGIN
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
          added := ARRAY(SELECT ROW(tenant_id, 0, 0, 0, count(*),
              count(*) FILTER (WHERE status = 'QUEUED'), count(*) FILTER (WHERE status = 'BUILDING'),
              count(*) FILTER (WHERE status = 'READY'), count(*) FILTER (WHERE status = 'ERROR'),
              count(*) FILTER (WHERE status = 'CANCELED'), 0)::tenant_stats
            FROM new_rows GROUP BY tenant_id);
        END IF;
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
          removed := ARRAY(SELECT ROW(tenant_id, 0, 0, 0, -count(*),
              -count(*) FILTER (WHERE status = 'QUEUED'), -count(*) FILTER (WHERE status = 'BUILDING'),
              -count(*) FILTER (WHERE status = 'READY'), -count(*) FILTER (WHERE status = 'ERROR'),
              -count(*) FILTER (WHERE status = 'CANCELED'), 0)::tenant_stats
            FROM old_rows GROUP BY tenant_id);
        END IF;
        PERFORM app_tenant_stats_add(added || removed);
        RETURN NULL;
      END
      $body$
  $fn$, current_schema());

  -- usage_counters: the API request rows' counts (an UPDATE adds the difference).
  EXECUTE format($fn$
    CREATE FUNCTION app_tenant_stats_requests() RETURNS trigger
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      DECLARE
        added tenant_stats[] := '{}';
        removed tenant_stats[] := '{}';
      BEGIN
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
          added := ARRAY(SELECT ROW(tenant_id, 0, 0, 0, 0, 0, 0, 0, 0, 0, sum(count))::tenant_stats
            FROM new_rows WHERE resource = 'API_REQUESTS_PER_MINUTE' GROUP BY tenant_id);
        END IF;
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
          removed := ARRAY(SELECT ROW(tenant_id, 0, 0, 0, 0, 0, 0, 0, 0, 0, -sum(count))::tenant_stats
            FROM old_rows WHERE resource = 'API_REQUESTS_PER_MINUTE' GROUP BY tenant_id);
        END IF;
        PERFORM app_tenant_stats_add(added || removed);
        RETURN NULL;
      END
      $body$
  $fn$, current_schema());

  -- A new tenant starts with a zero row.
  EXECUTE format($fn$
    CREATE FUNCTION app_tenant_stats_new_tenants() RETURNS trigger
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      BEGIN
        INSERT INTO tenant_stats (tenant_id) SELECT id FROM new_rows ORDER BY id ON CONFLICT (tenant_id) DO NOTHING;
        RETURN NULL;
      END
      $body$
  $fn$, current_schema());

  -- The tenant's counters recounted from its rows here (the copies between
  -- placements, whose replica-mode writes fire no trigger; a repair). Takes
  -- the row's lock first, so a concurrent counted write waits for the
  -- recount's transaction and then adds its own delta to the exact count.
  EXECUTE format($fn$
    CREATE FUNCTION app_tenant_stats_recount(p_tenant uuid) RETURNS void
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM tenants WHERE id = p_tenant) THEN
          DELETE FROM tenant_stats WHERE tenant_id = p_tenant;
          RETURN;
        END IF;
        INSERT INTO tenant_stats (tenant_id) VALUES (p_tenant) ON CONFLICT (tenant_id) DO NOTHING;
        PERFORM 1 FROM tenant_stats WHERE tenant_id = p_tenant FOR NO KEY UPDATE;
        UPDATE tenant_stats s SET
          members = (SELECT count(*) FROM memberships WHERE tenant_id = p_tenant),
          projects = (SELECT count(*) FROM projects WHERE tenant_id = p_tenant),
          workflows = (SELECT count(*) FROM workflows WHERE tenant_id = p_tenant),
          deployments = d.total, deployments_queued = d.q, deployments_building = d.b,
          deployments_ready = d.r, deployments_error = d.e, deployments_canceled = d.c,
          api_requests = (SELECT coalesce(sum(count), 0) FROM usage_counters
                           WHERE tenant_id = p_tenant AND resource = 'API_REQUESTS_PER_MINUTE')
        FROM (SELECT count(*) AS total, count(*) FILTER (WHERE status = 'QUEUED') AS q,
                count(*) FILTER (WHERE status = 'BUILDING') AS b, count(*) FILTER (WHERE status = 'READY') AS r,
                count(*) FILTER (WHERE status = 'ERROR') AS e, count(*) FILTER (WHERE status = 'CANCELED') AS c
              FROM deployments WHERE tenant_id = p_tenant) d
        WHERE s.tenant_id = p_tenant;
      END
      $body$
  $fn$, current_schema());
END
$$;
REVOKE ALL ON FUNCTION app_tenant_stats_add("tenant_stats"[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION app_tenant_stats_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_tenant_stats_deployments() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_tenant_stats_requests() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_tenant_stats_new_tenants() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_tenant_stats_recount(uuid) FROM PUBLIC;

CREATE TRIGGER tenant_stats_insert AFTER INSERT ON "memberships" REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_rows('members');
CREATE TRIGGER tenant_stats_delete AFTER DELETE ON "memberships" REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_rows('members');
CREATE TRIGGER tenant_stats_insert AFTER INSERT ON "projects" REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_rows('projects');
CREATE TRIGGER tenant_stats_delete AFTER DELETE ON "projects" REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_rows('projects');
CREATE TRIGGER tenant_stats_insert AFTER INSERT ON "workflows" REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_rows('workflows');
CREATE TRIGGER tenant_stats_delete AFTER DELETE ON "workflows" REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_rows('workflows');
CREATE TRIGGER tenant_stats_insert AFTER INSERT ON "deployments" REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_deployments();
CREATE TRIGGER tenant_stats_update AFTER UPDATE ON "deployments" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_deployments();
CREATE TRIGGER tenant_stats_delete AFTER DELETE ON "deployments" REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_deployments();
CREATE TRIGGER tenant_stats_insert AFTER INSERT ON "usage_counters" REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_requests();
CREATE TRIGGER tenant_stats_update AFTER UPDATE ON "usage_counters" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_requests();
CREATE TRIGGER tenant_stats_delete AFTER DELETE ON "usage_counters" REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_requests();
CREATE TRIGGER tenant_stats_insert AFTER INSERT ON "tenants" REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_new_tenants();

-- Backfill: every tenant's counters from its rows, in one pass per table
-- (the tables are locked against writes meanwhile, so no change falls
-- between the count and the triggers).
LOCK TABLE "tenants", "memberships", "projects", "workflows", "deployments", "usage_counters" IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO "tenant_stats" (tenant_id, members, projects, workflows, deployments, deployments_queued, deployments_building,
                            deployments_ready, deployments_error, deployments_canceled, api_requests)
SELECT t.id, coalesce(m.n, 0), coalesce(p.n, 0), coalesce(w.n, 0), coalesce(d.total, 0), coalesce(d.q, 0), coalesce(d.b, 0),
       coalesce(d.r, 0), coalesce(d.e, 0), coalesce(d.c, 0), coalesce(r.n, 0)
FROM tenants t
LEFT JOIN (SELECT tenant_id, count(*) AS n FROM memberships GROUP BY tenant_id) m ON m.tenant_id = t.id
LEFT JOIN (SELECT tenant_id, count(*) AS n FROM projects GROUP BY tenant_id) p ON p.tenant_id = t.id
LEFT JOIN (SELECT tenant_id, count(*) AS n FROM workflows GROUP BY tenant_id) w ON w.tenant_id = t.id
LEFT JOIN (SELECT tenant_id, count(*) AS total, count(*) FILTER (WHERE status = 'QUEUED') AS q,
                  count(*) FILTER (WHERE status = 'BUILDING') AS b, count(*) FILTER (WHERE status = 'READY') AS r,
                  count(*) FILTER (WHERE status = 'ERROR') AS e, count(*) FILTER (WHERE status = 'CANCELED') AS c
           FROM deployments GROUP BY tenant_id) d ON d.tenant_id = t.id
LEFT JOIN (SELECT tenant_id, sum(count) AS n FROM usage_counters WHERE resource = 'API_REQUESTS_PER_MINUTE' GROUP BY tenant_id) r
  ON r.tenant_id = t.id;
