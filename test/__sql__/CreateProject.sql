-- CreateProject (src/http/graphiql-examples.graphql): 8 statements
app: BEGIN; SELECT set_config('app.tenant_id', '<uuid>', true), set_config('app.user_id', '<uuid>', true), set_config('app.api_key_id', '', true), set_config('statement_timeout', '30000', true), set_config('idle_in_transaction_session_timeout', '60000', true); SELECT app_request_facts(NULL, NULL) AS facts, (SELECT placement::text || coalesce(':' || placement_server, '') || coalesce(':' || placement_name, '') FROM tenants WHERE id = '<uuid>'::uuid) AS route, pg_try_advisory_xact_lock_shared(hashtext('tenant-move:' || '<uuid>'::text)) AS writable
app: SAVEPOINT prisma_batch_1
app: INSERT INTO "public"."projects" ("tenant_id","name","slug","created_at","updated_at") VALUES ($1,$2,$3,$4,$5) RETURNING "public"."projects"."tenant_id", "public"."projects"."id", "public"."projects"."name", "public"."projects"."slug", "public"."projects"."description", "public"."projects"."created_at", "public"."projects"."updated_at"
app: SELECT pg_advisory_xact_lock(hashtext($1))
app: SELECT count(*)::int AS n FROM projects WHERE tenant_id = $1::uuid
app: INSERT INTO "public"."audit_log" ("tenant_id","action","actor_type","actor_id","actor_label","target_type","target_id","cross_tenant","metadata","request_id","ip","created_at") VALUES ($1,$2,CAST($3::text AS "public"."ActorType"),$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING "public"."audit_log"."tenant_id", "public"."audit_log"."id"
app: RELEASE SAVEPOINT prisma_batch_1
app: COMMIT
