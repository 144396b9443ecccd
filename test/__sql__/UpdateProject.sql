-- UpdateProject (test/operations/projects.graphql): 7 statements
app: BEGIN; SELECT set_config('app.tenant_id', '<uuid>', true), set_config('app.user_id', '<uuid>', true), set_config('app.api_key_id', '', true), set_config('statement_timeout', '30000', true), set_config('idle_in_transaction_session_timeout', '60000', true); SELECT app_request_facts(NULL, NULL) AS facts, (SELECT placement::text || coalesce(':' || placement_server, '') || coalesce(':' || placement_name, '') FROM tenants WHERE id = '<uuid>'::uuid) AS route, pg_try_advisory_xact_lock_shared(hashtext('tenant-move:' || '<uuid>'::text)) AS writable
app: SAVEPOINT prisma_batch_1
app: UPDATE "public"."projects" SET "description" = $1, "updated_at" = $2 WHERE ("public"."projects"."id" = $3 AND "public"."projects"."tenant_id" = $4)
app: INSERT INTO "public"."audit_log" ("tenant_id","action","actor_type","actor_id","actor_label","target_type","target_id","cross_tenant","metadata","request_id","ip","created_at") VALUES ($1,$2,CAST($3::text AS "public"."ActorType"),$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING "public"."audit_log"."tenant_id", "public"."audit_log"."id"
app: SELECT "public"."projects"."tenant_id", "public"."projects"."id", "public"."projects"."name", "public"."projects"."slug", "public"."projects"."description", "public"."projects"."created_at", "public"."projects"."updated_at" FROM "public"."projects" WHERE (("public"."projects"."tenant_id" = $1 AND "public"."projects"."id" = $2) AND "public"."projects"."tenant_id" = $3) LIMIT $4 OFFSET $5
app: RELEASE SAVEPOINT prisma_batch_1
app: COMMIT
