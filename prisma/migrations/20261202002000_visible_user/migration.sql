-- "Which users a tenant session may see", written once: a user is visible to
-- a tenant when it is a member of the tenant, or when it is the caller.
-- Until now this was written out in the users RLS policy, in the users
-- loader and in the deployments' creator join. All three call this function
-- now; the Prisma tenant scope (src/tenancy/tenant-scope.ts, wall 1) mirrors
-- it for the queries Prisma builds.
--
-- The tenant and the caller are arguments, not read from the session here:
-- the RLS policy passes the session's (app_current_tenant(),
-- app_current_user()), raw SQL passes the request's own, so wall 1 keeps
-- naming its tenant itself. SECURITY INVOKER (the default): memberships stay
-- under their own row-level security. A plain SQL function, so PostgreSQL
-- inlines it into the statement that calls it.
CREATE FUNCTION app_visible_user(p_user uuid, p_tenant uuid, p_caller uuid) RETURNS boolean
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$
    SELECT (p_caller IS NOT NULL AND p_user = p_caller)
        OR EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = p_tenant AND m.user_id = p_user)
  $$;
REVOKE ALL ON FUNCTION app_visible_user(uuid, uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_visible_user(uuid, uuid, uuid) TO tenantgraph_app, tenantgraph_platform;

DROP POLICY tenant_members ON "users";
CREATE POLICY visible_users ON "users" FOR SELECT TO tenantgraph_app
  USING (app_visible_user(id, app_current_tenant(), app_current_user()));
