-- The analytics counters without cross-tenant locks (review of
-- 20261202006000_tenant_stats; docs/placement.md, "Platform analytics").
--
-- API requests leave tenant_stats for `tenant_request_totals` (one row per
-- tenant), which only the request counter's flush writes, through
-- app_request_counts_flush(): no trigger on usage_counters any more. Why: the
-- flush is one statement for every tenant with traffic; through the old
-- usage_counters trigger it locked those tenants' tenant_stats rows, which
-- every tenant mutation also locks, until its COMMIT. One tenant's open
-- mutation then blocked the flush, and the flush every tenant sorted before
-- it (H1); two flushes could deadlock (the ON CONFLICT UPDATE and INSERT
-- triggers each locked an ordered set, the two together unordered: M1); and
-- so could purgeTenant with a flush of the same tenant (M2).
--
-- Now no statement covering many tenants locks a row a tenant transaction
-- locks:
--   * tenant_stats (members, projects, workflows, deployments) is written by
--     the statement triggers of the tenant's own writes, by a recount and by
--     TRUNCATE; a statement touching several tenants (platform bulk work)
--     locks their rows in tenant_id order first.
--   * tenant_request_totals is written by the flush (and a recount) only.
--     No tenant transaction locks it. The flush locks the rows of its
--     tenants in tenant_id order with SKIP LOCKED (a tenant whose row another
--     flush, a purge or a recount holds is left for the next flush: it never
--     waits for one), then, in a fresh snapshot, upserts the hourly
--     usage_counters rows and adds each tenant's difference to its total.
--     Every writer of a tenant's API request rows (the flush, purgeTenant,
--     a recount) takes that row first, so the difference is exact. It runs
--     with lock_timeout = 2s (nothing it needs should be held, see above; a
--     timeout fails the flush, whose counts stay in the store for the next).
--     Lag: a tenant's total follows its requests by one flush interval (10 s
--     by default), two when its row was held.
--   * Writing usage_counters' API request rows any other way (by hand, a
--     seed) leaves the totals as they were until app_tenant_stats_recount()
--     of the tenant.
--
-- Also: a deployments UPDATE that changes no status adds nothing and locks
-- nothing (its trigger pairs old and new rows by key and drops zero deltas
-- before locking; PostgreSQL refuses transition tables on a trigger with a
-- column list, so it stays AFTER UPDATE); a row never changes tenant
-- (UPDATE of tenant_id on the counted tables and of tenants.id is refused:
-- the counters would not follow, and nothing in the server does it); a
-- TRUNCATE of a counted table zeroes its counters.

-- 1. The request totals, out of tenant_stats.
DROP TRIGGER tenant_stats_insert ON "usage_counters";
DROP TRIGGER tenant_stats_update ON "usage_counters";
DROP TRIGGER tenant_stats_delete ON "usage_counters";
DROP FUNCTION app_tenant_stats_requests();
ALTER TABLE "tenant_stats" DROP COLUMN "api_requests";

CREATE TABLE "tenant_request_totals" (
  "tenant_id" UUID NOT NULL,
  "api_requests" BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT "tenant_request_totals_pkey" PRIMARY KEY ("tenant_id")
);
ALTER TABLE "tenant_request_totals" ADD CONSTRAINT "tenant_request_totals_tenant_id_fkey"
  FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE;
-- tenantUsage(orderBy: API_REQUESTS): an index scan of the page, as for the other counters.
CREATE INDEX "tenant_request_totals_api_requests_tenant_id_idx" ON "tenant_request_totals"("api_requests", "tenant_id");

ALTER TABLE "tenant_request_totals" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "tenant_request_totals" FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON "tenant_request_totals" FOR SELECT TO tenantgraph_app
  USING (tenant_id = app_current_tenant());
-- Read, and deleted by purgeTenant (first: see above); the owner, a member of this role, passes RLS here for the flush.
CREATE POLICY platform_access ON "tenant_request_totals" TO tenantgraph_platform USING (true) WITH CHECK (true);
REVOKE ALL ON "tenant_request_totals" FROM PUBLIC;
GRANT SELECT ON "tenant_request_totals" TO tenantgraph_app;
GRANT SELECT, DELETE ON "tenant_request_totals" TO tenantgraph_platform;

DO $$
BEGIN
  -- Adds the deltas (one tenant_stats row per tenant: the amounts to add):
  -- summed per tenant, zero deltas dropped BEFORE any lock, then the rows
  -- locked in tenant_id order, then updated. A tenant without a counters row
  -- (deleted in this transaction: its row went with it) is skipped.
  EXECUTE format($fn$
    CREATE OR REPLACE FUNCTION app_tenant_stats_add(p_deltas "tenant_stats"[]) RETURNS void
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      DECLARE
        deltas tenant_stats[];
      BEGIN
        deltas := ARRAY(
          SELECT ROW(d.*)::tenant_stats FROM (
            SELECT x.tenant_id, sum(x.members)::int AS members, sum(x.projects)::int AS projects, sum(x.workflows)::int AS workflows,
              sum(x.deployments)::int AS deployments, sum(x.deployments_queued)::int AS q, sum(x.deployments_building)::int AS b,
              sum(x.deployments_ready)::int AS r, sum(x.deployments_error)::int AS e, sum(x.deployments_canceled)::int AS c
            FROM unnest(p_deltas) x GROUP BY x.tenant_id) d
          WHERE (d.members, d.projects, d.workflows, d.deployments, d.q, d.b, d.r, d.e, d.c)
                IS DISTINCT FROM (0, 0, 0, 0, 0, 0, 0, 0, 0)
          ORDER BY d.tenant_id);
        IF cardinality(deltas) = 0 THEN
          RETURN;
        END IF;
        IF cardinality(deltas) > 1 THEN
          PERFORM 1 FROM tenant_stats s WHERE s.tenant_id IN (SELECT d.tenant_id FROM unnest(deltas) d)
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
          deployments_canceled = s.deployments_canceled + d.deployments_canceled
        FROM unnest(deltas) d
        WHERE s.tenant_id = d.tenant_id;
      END
      $body$
  $fn$, current_schema());

  -- memberships, projects, workflows: TG_ARGV[0] names the counter; one row counts one.
  EXECUTE format($fn$
    CREATE OR REPLACE FUNCTION app_tenant_stats_rows() RETURNS trigger
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      DECLARE
        deltas tenant_stats[];
      BEGIN
        IF TG_OP = 'INSERT' THEN
          deltas := ARRAY(SELECT ROW(r.tenant_id,
              CASE TG_ARGV[0] WHEN 'members' THEN r.n ELSE 0 END, CASE TG_ARGV[0] WHEN 'projects' THEN r.n ELSE 0 END,
              CASE TG_ARGV[0] WHEN 'workflows' THEN r.n ELSE 0 END, 0, 0, 0, 0, 0, 0)::tenant_stats
            FROM (SELECT tenant_id, count(*)::int AS n FROM new_rows GROUP BY tenant_id) r);
        ELSE
          deltas := ARRAY(SELECT ROW(r.tenant_id,
              CASE TG_ARGV[0] WHEN 'members' THEN -r.n ELSE 0 END, CASE TG_ARGV[0] WHEN 'projects' THEN -r.n ELSE 0 END,
              CASE TG_ARGV[0] WHEN 'workflows' THEN -r.n ELSE 0 END, 0, 0, 0, 0, 0, 0)::tenant_stats
            FROM (SELECT tenant_id, count(*)::int AS n FROM old_rows GROUP BY tenant_id) r);
        END IF;
        PERFORM app_tenant_stats_add(deltas);
        RETURN NULL;
      END
      $body$
  $fn$, current_schema());

  -- deployments: the total and one counter per status. An UPDATE counts
  -- only the rows whose status changed (old and new paired by key: a row
  -- never changes tenant, see below), so one that changes no status adds
  -- nothing and, its deltas all zero, locks nothing.
  EXECUTE format($fn$
    CREATE OR REPLACE FUNCTION app_tenant_stats_deployments() RETURNS trigger
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      DECLARE
        deltas tenant_stats[];
      BEGIN
        IF TG_OP = 'INSERT' THEN
          deltas := ARRAY(SELECT ROW(tenant_id, 0, 0, 0, count(*),
              count(*) FILTER (WHERE status = 'QUEUED'), count(*) FILTER (WHERE status = 'BUILDING'),
              count(*) FILTER (WHERE status = 'READY'), count(*) FILTER (WHERE status = 'ERROR'),
              count(*) FILTER (WHERE status = 'CANCELED'))::tenant_stats
            FROM new_rows GROUP BY tenant_id);
        ELSIF TG_OP = 'DELETE' THEN
          deltas := ARRAY(SELECT ROW(tenant_id, 0, 0, 0, -count(*),
              -count(*) FILTER (WHERE status = 'QUEUED'), -count(*) FILTER (WHERE status = 'BUILDING'),
              -count(*) FILTER (WHERE status = 'READY'), -count(*) FILTER (WHERE status = 'ERROR'),
              -count(*) FILTER (WHERE status = 'CANCELED'))::tenant_stats
            FROM old_rows GROUP BY tenant_id);
        ELSE
          deltas := ARRAY(SELECT ROW(n.tenant_id, 0, 0, 0, 0,
              count(*) FILTER (WHERE n.status = 'QUEUED') - count(*) FILTER (WHERE o.status = 'QUEUED'),
              count(*) FILTER (WHERE n.status = 'BUILDING') - count(*) FILTER (WHERE o.status = 'BUILDING'),
              count(*) FILTER (WHERE n.status = 'READY') - count(*) FILTER (WHERE o.status = 'READY'),
              count(*) FILTER (WHERE n.status = 'ERROR') - count(*) FILTER (WHERE o.status = 'ERROR'),
              count(*) FILTER (WHERE n.status = 'CANCELED') - count(*) FILTER (WHERE o.status = 'CANCELED'))::tenant_stats
            FROM new_rows n JOIN old_rows o ON o.tenant_id = n.tenant_id AND o.id = n.id
            WHERE o.status IS DISTINCT FROM n.status
            GROUP BY n.tenant_id);
        END IF;
        PERFORM app_tenant_stats_add(deltas);
        RETURN NULL;
      END
      $body$
  $fn$, current_schema());

  -- A new tenant starts with zero rows.
  EXECUTE format($fn$
    CREATE OR REPLACE FUNCTION app_tenant_stats_new_tenants() RETURNS trigger
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      BEGIN
        INSERT INTO tenant_stats (tenant_id) SELECT id FROM new_rows ORDER BY id ON CONFLICT (tenant_id) DO NOTHING;
        INSERT INTO tenant_request_totals (tenant_id) SELECT id FROM new_rows ORDER BY id ON CONFLICT (tenant_id) DO NOTHING;
        RETURN NULL;
      END
      $body$
  $fn$, current_schema());

  -- The tenant's counters and request total recounted from its rows here
  -- (copies between placements, whose replica-mode writes fire no trigger;
  -- a seed; a repair). Takes each row's lock first, so a concurrent counted
  -- write (or flush) waits for the recount's transaction and then adds its
  -- own delta to the exact count.
  EXECUTE format($fn$
    CREATE OR REPLACE FUNCTION app_tenant_stats_recount(p_tenant uuid) RETURNS void
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM tenants WHERE id = p_tenant) THEN
          DELETE FROM tenant_request_totals WHERE tenant_id = p_tenant;
          DELETE FROM tenant_stats WHERE tenant_id = p_tenant;
          RETURN;
        END IF;
        INSERT INTO tenant_request_totals (tenant_id) VALUES (p_tenant) ON CONFLICT (tenant_id) DO NOTHING;
        PERFORM 1 FROM tenant_request_totals WHERE tenant_id = p_tenant FOR NO KEY UPDATE;
        UPDATE tenant_request_totals SET api_requests = (SELECT coalesce(sum(count), 0) FROM usage_counters
                                                          WHERE tenant_id = p_tenant AND resource = 'API_REQUESTS_PER_MINUTE')
        WHERE tenant_id = p_tenant;
        INSERT INTO tenant_stats (tenant_id) VALUES (p_tenant) ON CONFLICT (tenant_id) DO NOTHING;
        PERFORM 1 FROM tenant_stats WHERE tenant_id = p_tenant FOR NO KEY UPDATE;
        UPDATE tenant_stats s SET
          members = (SELECT count(*) FROM memberships WHERE tenant_id = p_tenant),
          projects = (SELECT count(*) FROM projects WHERE tenant_id = p_tenant),
          workflows = (SELECT count(*) FROM workflows WHERE tenant_id = p_tenant),
          deployments = d.total, deployments_queued = d.q, deployments_building = d.b,
          deployments_ready = d.r, deployments_error = d.e, deployments_canceled = d.c
        FROM (SELECT count(*) AS total, count(*) FILTER (WHERE status = 'QUEUED') AS q,
                count(*) FILTER (WHERE status = 'BUILDING') AS b, count(*) FILTER (WHERE status = 'READY') AS r,
                count(*) FILTER (WHERE status = 'ERROR') AS e, count(*) FILTER (WHERE status = 'CANCELED') AS c
              FROM deployments WHERE tenant_id = p_tenant) d
        WHERE s.tenant_id = p_tenant;
      END
      $body$
  $fn$, current_schema());

  -- The request counter's flush (src/infra/request-counter.ts): the hourly
  -- API request rows of many tenants (p_tenants[i], p_windows[i],
  -- p_counts[i]; one entry per tenant-hour), merged by GREATEST (the
  -- store's running totals, idempotent) or added (p_add: counts buffered
  -- while the store was down), and each tenant's total moved by the rows'
  -- difference. The tenants' total rows are locked first, in tenant_id
  -- order; unless adding, a row another transaction holds is skipped (that
  -- tenant is answered, to be flushed again), so the flush waits for no one.
  -- The rows are then read in a fresh snapshot: exact, as every writer of a
  -- tenant's API request rows holds its total row. A purged tenant (no total
  -- row, no tenants row) is dropped. Answers the skipped tenants.
  EXECUTE format($fn$
    CREATE FUNCTION app_request_counts_flush(p_tenants uuid[], p_windows timestamptz[], p_counts int[], p_add boolean)
      RETURNS uuid[]
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      SET lock_timeout = '2s'
      AS $body$
      DECLARE
        locked uuid[];
      BEGIN
        -- The table lock its INSERT takes anyway, first: a TRUNCATE (the table, then the
        -- totals rows in its trigger) then makes the flush wait (or time out), not deadlock.
        LOCK TABLE usage_counters IN ROW EXCLUSIVE MODE;
        -- A tenant that lost its row (by hand) gets one back.
        INSERT INTO tenant_request_totals (tenant_id)
          SELECT t.id FROM tenants t
          WHERE t.id = ANY(p_tenants) AND NOT EXISTS (SELECT 1 FROM tenant_request_totals r WHERE r.tenant_id = t.id)
          ORDER BY t.id ON CONFLICT (tenant_id) DO NOTHING;
        IF p_add THEN
          SELECT coalesce(array_agg(l.tenant_id), '{}') INTO locked FROM (
            SELECT r.tenant_id FROM tenant_request_totals r WHERE r.tenant_id = ANY(p_tenants)
            ORDER BY r.tenant_id FOR NO KEY UPDATE) l;
        ELSE
          SELECT coalesce(array_agg(l.tenant_id), '{}') INTO locked FROM (
            SELECT r.tenant_id FROM tenant_request_totals r WHERE r.tenant_id = ANY(p_tenants)
            ORDER BY r.tenant_id FOR NO KEY UPDATE SKIP LOCKED) l;
        END IF;
        WITH x AS (
          SELECT i.tenant_id, i.window_start, i.count
          FROM unnest(p_tenants, p_windows, p_counts) AS i(tenant_id, window_start, count)
          JOIN unnest(locked) AS l(tenant_id) ON l.tenant_id = i.tenant_id
        ), old AS (
          SELECT u.tenant_id, u.window_start, u.count FROM usage_counters u
          JOIN x ON x.tenant_id = u.tenant_id AND x.window_start = u.window_start
          WHERE u.resource = 'API_REQUESTS_PER_MINUTE'
        ), up AS (
          INSERT INTO usage_counters (tenant_id, resource, window_start, count)
          SELECT x.tenant_id, 'API_REQUESTS_PER_MINUTE', x.window_start, x.count FROM x ORDER BY x.tenant_id, x.window_start
          ON CONFLICT (tenant_id, resource, window_start) DO UPDATE
            SET count = CASE WHEN p_add THEN usage_counters.count + EXCLUDED.count ELSE GREATEST(usage_counters.count, EXCLUDED.count) END
          RETURNING usage_counters.tenant_id, usage_counters.window_start, usage_counters.count
        ), d AS (
          SELECT up.tenant_id, sum(up.count - coalesce(old.count, 0))::bigint AS n
          FROM up LEFT JOIN old ON old.tenant_id = up.tenant_id AND old.window_start = up.window_start
          GROUP BY up.tenant_id
        )
        UPDATE tenant_request_totals r SET api_requests = r.api_requests + d.n
        FROM d WHERE r.tenant_id = d.tenant_id AND d.n <> 0;
        RETURN ARRAY(SELECT s.id FROM (SELECT i.id FROM unnest(p_tenants) AS i(id) EXCEPT SELECT l.id FROM unnest(locked) AS l(id)) s
                     WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = s.id));
      END
      $body$
  $fn$, current_schema());

  -- TRUNCATE of a counted table: its counters are zero for every tenant
  -- (TG_ARGV[0]: the table), rows locked in tenant_id order first.
  EXECUTE format($fn$
    CREATE FUNCTION app_tenant_stats_truncated() RETURNS trigger
      LANGUAGE plpgsql VOLATILE SECURITY DEFINER
      SET search_path = %I, pg_temp
      AS $body$
      BEGIN
        IF TG_ARGV[0] = 'usage_counters' THEN
          PERFORM 1 FROM tenant_request_totals WHERE api_requests <> 0 ORDER BY tenant_id FOR NO KEY UPDATE;
          UPDATE tenant_request_totals SET api_requests = 0 WHERE api_requests <> 0;
        ELSIF TG_ARGV[0] = 'deployments' THEN
          PERFORM 1 FROM tenant_stats WHERE deployments <> 0 ORDER BY tenant_id FOR NO KEY UPDATE;
          UPDATE tenant_stats SET deployments = 0, deployments_queued = 0, deployments_building = 0,
            deployments_ready = 0, deployments_error = 0, deployments_canceled = 0
          WHERE deployments <> 0;
        ELSE
          EXECUTE format('SELECT 1 FROM tenant_stats WHERE %%1$I <> 0 ORDER BY tenant_id FOR NO KEY UPDATE', TG_ARGV[0]);
          EXECUTE format('UPDATE tenant_stats SET %%1$I = 0 WHERE %%1$I <> 0', TG_ARGV[0]);
        END IF;
        RETURN NULL;
      END
      $body$
  $fn$, current_schema());

  -- A row never changes tenant: the counters (and the tenant's cache
  -- generation, its placement copies) would not follow it.
  EXECUTE format($fn$
    CREATE FUNCTION app_refuse_tenant_change() RETURNS trigger
      LANGUAGE plpgsql
      SET search_path = %I, pg_temp
      AS $body$
      BEGIN
        RAISE EXCEPTION 'a row of %% cannot move to another tenant', TG_TABLE_NAME
          USING ERRCODE = 'restrict_violation';
      END
      $body$
  $fn$, current_schema());
END
$$;
REVOKE ALL ON FUNCTION app_tenant_stats_add("tenant_stats"[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION app_request_counts_flush(uuid[], timestamptz[], int[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION app_tenant_stats_truncated() FROM PUBLIC;
REVOKE ALL ON FUNCTION app_refuse_tenant_change() FROM PUBLIC;
-- The flush runs on the platform client.
GRANT EXECUTE ON FUNCTION app_request_counts_flush(uuid[], timestamptz[], int[], boolean) TO tenantgraph_platform;

-- 2. Deployments: an UPDATE's trigger (the function above pairs old and new rows).
--    Kept AFTER UPDATE without a column list: PostgreSQL refuses transition tables there.

-- 3. No row changes tenant; tenants.id never changes. AFTER (the event is
--    queued only when the WHEN holds): the app role's attempt still meets
--    row-level security first (42501), as before; the platform role's and
--    the owner's statement fails whole at its end (23001).
CREATE TRIGGER tenant_id_fixed AFTER UPDATE OF tenant_id ON "memberships"
  FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id) EXECUTE FUNCTION app_refuse_tenant_change();
CREATE TRIGGER tenant_id_fixed AFTER UPDATE OF tenant_id ON "projects"
  FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id) EXECUTE FUNCTION app_refuse_tenant_change();
CREATE TRIGGER tenant_id_fixed AFTER UPDATE OF tenant_id ON "workflows"
  FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id) EXECUTE FUNCTION app_refuse_tenant_change();
CREATE TRIGGER tenant_id_fixed AFTER UPDATE OF tenant_id ON "deployments"
  FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id) EXECUTE FUNCTION app_refuse_tenant_change();
CREATE TRIGGER tenant_id_fixed AFTER UPDATE OF tenant_id ON "usage_counters"
  FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id) EXECUTE FUNCTION app_refuse_tenant_change();
CREATE TRIGGER tenant_id_fixed AFTER UPDATE OF id ON "tenants"
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION app_refuse_tenant_change();

-- 4. TRUNCATE zeroes the table's counters.
CREATE TRIGGER tenant_stats_truncate AFTER TRUNCATE ON "memberships" FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_truncated('members');
CREATE TRIGGER tenant_stats_truncate AFTER TRUNCATE ON "projects" FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_truncated('projects');
CREATE TRIGGER tenant_stats_truncate AFTER TRUNCATE ON "workflows" FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_truncated('workflows');
CREATE TRIGGER tenant_stats_truncate AFTER TRUNCATE ON "deployments" FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_truncated('deployments');
CREATE TRIGGER tenant_stats_truncate AFTER TRUNCATE ON "usage_counters" FOR EACH STATEMENT EXECUTE FUNCTION app_tenant_stats_truncated('usage_counters');

-- 5. Backfill of the request totals (usage_counters is locked against writes meanwhile).
LOCK TABLE "tenants", "usage_counters" IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO "tenant_request_totals" (tenant_id, api_requests)
SELECT t.id, coalesce(r.n, 0)
FROM tenants t
LEFT JOIN (SELECT tenant_id, sum(count) AS n FROM usage_counters WHERE resource = 'API_REQUESTS_PER_MINUTE' GROUP BY tenant_id) r
  ON r.tenant_id = t.id;
