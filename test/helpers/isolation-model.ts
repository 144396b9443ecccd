import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { createApp, type App } from "../../src/app.ts";
import { createDatabases, type Databases } from "../../src/db/clients.ts";
import { demoEmail, DEMO_ROLES, DEMO_TENANTS, seedDemo } from "../../src/db/seed.ts";
import { Prisma, type PrismaClient } from "../../src/generated/prisma/client.ts";
import type { Role } from "../../src/generated/prisma/enums.ts";
import { newSecret } from "../../src/modules/api-keys/api-key.service.ts";
import { createLogger } from "../../src/infra/logger.ts";
import type { Store } from "../../src/infra/store.ts";
import { signDevToken } from "../../src/tenancy/tokens.ts";
import { TEST_JWT_SECRET, testAppDeps } from "./app.ts";
import { createTestDatabase, type TestDatabase } from "./db.ts";
import { isolatedStore } from "./isolated-store.ts";
import { spreadDemoTenants, spreadPlacements, tenantRows } from "./placements.ts";

/**
 * A randomized, model-based isolation test (issue 12, point 3).
 *
 * fast-check generates sequences of GraphQL operations (queries, mutations,
 * node/nodes with own and foreign ids, cursors taken from other tenants and
 * other lists, filters) by callers of three tenants in every role (OWNER,
 * ADMIN, DEVELOPER, VIEWER users and ADMIN, VIEWER API keys). They run
 * against the real app with ONE wall switched off:
 *
 *   - "scope": wall 1 alone. The app's tenant connection is the database
 *     owner (a superuser: row-level security does not apply); the Prisma
 *     tenant scope is on.
 *   - "rls":   wall 2 alone. The app connects as tenantgraph_app (RLS); the
 *     Prisma tenant scope is off (ContextDeps.tenantScope = false).
 *   - "none":  both off: the control that shows this test finds leaks.
 *
 * The model keeps which row belongs to which tenant (and what a tenant's
 * lists must count), updated from every acknowledged mutation. After every
 * operation: every id anywhere in the answer must belong to the caller's
 * tenant (a user: a member of it or the caller), every totalCount must equal
 * the model's; after every mutation, a digest of each OTHER tenant's rows
 * (and of every user identity) must be unchanged. At the end of each run the
 * model is compared with the database, row by row.
 */

export type Wall = "scope" | "rls" | "none";

type Obj = Record<string, any>;
const TYPES = ["Project", "Deployment", "Workflow", "ApiKey", "Membership", "AuditLogEntry", "User", "Tenant"] as const;
type NodeType = (typeof TYPES)[number];

const gid = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString("base64");
function parseGid(value: string): { type: NodeType; id: string } | null {
  const decoded = Buffer.from(value, "base64").toString("utf8");
  const sep = decoded.indexOf(":");
  const type = decoded.slice(0, sep) as NodeType;
  const id = decoded.slice(sep + 1);
  if (!TYPES.includes(type) || !/^[0-9a-f-]{36}$/i.test(id) || gid(type, id) !== value) return null;
  return { type, id };
}

interface TenantModel {
  id: string;
  slug: string;
  projects: Map<string, { name: string; slug: string }>;
  deployments: Map<string, { projectId: string; status: string }>;
  workflows: Map<string, { projectId: string | null; status: string }>;
  memberships: Map<string, { userId: string; role: Role }>;
  apiKeys: Set<string>;
}

export interface Actor {
  name: string;
  tenant: number;
  role: Role;
  headers: Record<string, string>;
  userId: string | null;
  /** Rows that must stay: the actor's own membership or key. */
  protectedId: string;
}

interface Model {
  tenants: TenantModel[];
  /** Global id -> tenant index, for tenant-owned rows (learned from acknowledged creates). */
  owner: Map<string, number>;
  /** Cursors seen so far, with the list they came from. */
  cursors: string[];
  /** E-mails to invite: the other tenants' members among them. */
  emails: string[];
}

export interface Real {
  env: ModelEnv;
  stats: RunStats;
  /** The digests after the last mutation (reads change nothing they cover). */
  digest?: Digest;
}

export interface RunStats {
  operations: number;
  mutations: number;
  /** Operations answered with data (not only errors). */
  answered: number;
  /** Foreign ids seen in answers, counts off the model, foreign rows changed. */
  violations: string[];
  errorCodes: Record<string, number>;
}

/** The app with one wall off over a database of its own, three tenants and their callers. */
export interface ModelEnv {
  wall: Wall;
  app: App;
  db: TestDatabase;
  clients: Databases;
  store: Store;
  actors: Actor[];
  tenantIds: string[];
  /** By tenant (as tenantIds): the platform role's client where its rows live (its placement under TEST_PLACEMENTS=spread). */
  rows: PrismaClient[];
  close(): Promise<void>;
}

const ALL_LIMITS = ["API_REQUESTS_PER_MINUTE", "DEPLOYMENTS_PER_HOUR", "WORKFLOWS_PER_HOUR", "SEATS", "PROJECTS"] as const;

/**
 * `spread` (default: TEST_PLACEMENTS=spread): globex and wayne placed in a
 * schema and a database of their own after the seeding.
 */
export async function createModelEnv(wall: Wall, options: { spread?: boolean } = {}): Promise<ModelEnv> {
  const db = await createTestDatabase();
  // "scope" and "none": the tenant pool logs in as the owner (a superuser), so
  // RLS does not apply; "rls": as tenantgraph_app.
  const clients = createDatabases({ ownerUrl: db.url, appUrl: wall === "rls" ? undefined : db.url, pools: { FREE: 5, PRO: 5, ENTERPRISE: 5 } });
  await seedDemo(clients.platform);
  const tenants = await clients.platform.tenant.findMany({ where: { slug: { in: DEMO_TENANTS.map((t) => t.slug) } }, orderBy: { slug: "asc" } });
  // No quota or rate limit interferes with thousands of operations.
  await clients.platform.tenantLimitOverride.createMany({
    data: tenants.flatMap((t) => ALL_LIMITS.map((resource) => ({ tenantId: t.id, resource, limit: null }))),
  });
  // API keys of every tenant (globex is FREE: its plan has no api_access).
  await clients.platform.tenant.updateMany({ data: { featureOverrides: ["api_access"] } });
  const store = isolatedStore();
  const logger = createLogger(process.env.MODEL_DEBUG ? "error" : "silent");
  const app = createApp(testAppDeps(clients, store, { tenantScope: wall === "scope", logger }));
  const actors: Actor[] = [];
  for (const [i, t] of tenants.entries()) {
    for (const role of DEMO_ROLES) {
      const email = demoEmail(role, t.slug);
      const user = await clients.platform.user.findUniqueOrThrow({ where: { email } });
      const membership = await clients.platform.membership.findUniqueOrThrow({ where: { tenantId_userId: { tenantId: t.id, userId: user.id } } });
      const token = await signDevToken({ secret: TEST_JWT_SECRET, sub: email, tenant: t.slug, ttl: "2h" });
      actors.push({ name: `${t.slug}:${role}`, tenant: i, role, headers: { authorization: `Bearer ${token}` }, userId: user.id, protectedId: membership.id });
    }
    for (const role of ["ADMIN", "VIEWER"] as const) {
      const { prefix, secret, secretHash } = newSecret();
      const key = await clients.platform.apiKey.create({ data: { tenantId: t.id, name: `model ${role}`, role, prefix, secretHash } });
      actors.push({ name: `${t.slug}:key-${role}`, tenant: i, role, headers: { "x-api-key": secret }, userId: null, protectedId: key.id });
    }
  }
  // TEST_PLACEMENTS=spread: globex in a schema, wayne in a database of their own (test/helpers/placements.ts).
  const dropPlacements = (options.spread ?? spreadPlacements()) ? await spreadDemoTenants(clients) : undefined;
  const rows = await Promise.all(tenants.map((t) => tenantRows(clients, t.id)));
  // Proof the wall under test is the only one: the tenant pool's role.
  const [who] = await clients.app.$queryRaw<Array<{ bypass: boolean }>>`SELECT rolsuper OR rolbypassrls AS bypass FROM pg_roles WHERE rolname = current_user`;
  if (who!.bypass !== (wall !== "rls")) throw new Error(`wall ${wall}: the tenant connection ${who!.bypass ? "bypasses" : "obeys"} RLS`);
  return {
    wall,
    app,
    db,
    clients,
    store,
    actors,
    tenantIds: tenants.map((t) => t.id),
    rows,
    async close() {
      await dropPlacements?.();
      await clients.close();
      await store.close();
      await db.drop();
    },
  };
}

/** The model, read from the database through the platform role at the start of a run. */
async function loadModel(env: ModelEnv): Promise<Model> {
  const owner = new Map<string, number>();
  const tenants: TenantModel[] = [];
  for (const [i, id] of env.tenantIds.entries()) {
    const p = env.rows[i]!;
    const t = await p.tenant.findUniqueOrThrow({ where: { id } });
    const where = { tenantId: id };
    const [projects, deployments, workflows, memberships, apiKeys, audit] = await Promise.all([
      p.project.findMany({ where }),
      p.deployment.findMany({ where }),
      p.workflow.findMany({ where }),
      p.membership.findMany({ where }),
      p.apiKey.findMany({ where }),
      p.auditLogEntry.findMany({ where, select: { id: true } }),
    ]);
    tenants.push({
      id,
      slug: t.slug,
      projects: new Map(projects.map((r) => [r.id, { name: r.name, slug: r.slug }])),
      deployments: new Map(deployments.map((r) => [r.id, { projectId: r.projectId, status: r.status }])),
      workflows: new Map(workflows.map((r) => [r.id, { projectId: r.projectId, status: r.status }])),
      memberships: new Map(memberships.map((r) => [r.id, { userId: r.userId, role: r.role }])),
      apiKeys: new Set(apiKeys.map((r) => r.id)),
    });
    const own = (type: string, rows: Array<{ id: string }>) => rows.forEach((r) => owner.set(gid(type, r.id), i));
    own("Project", projects);
    own("Deployment", deployments);
    own("Workflow", workflows);
    own("Membership", memberships);
    own("ApiKey", apiKeys);
    own("AuditLogEntry", audit);
  }
  const users = await env.clients.platform.user.findMany({ select: { email: true } });
  return { tenants, owner, cursors: [], emails: users.map((u) => u.email) };
}

interface Digest {
  tenants: string[];
  users: Map<string, string>;
}

/** Per tenant: a digest of every row it owns (and its members' identities); per user: a digest of the identity. */
async function digests(env: ModelEnv): Promise<Digest> {
  const byId = new Map<string, string>();
  // Each tenant's rows where they live; the same statement everywhere.
  for (const [i, id] of env.tenantIds.entries()) {
    for (const r of await tenantDigest(env.rows[i]!, id)) byId.set(r.id, r.digest);
  }
  const users = await env.clients.platform.$queryRaw<Array<{ id: string; digest: string }>>`
    SELECT id::text, md5(concat_ws(':', email, auth_subject, is_platform_admin, name, created_at)) AS digest FROM users`;
  return { tenants: env.tenantIds.map((id) => byId.get(id)!), users: new Map(users.map((u) => [u.id, u.digest])) };
}

function tenantDigest(db: PrismaClient, tenantId: string) {
  return db.$queryRaw<Array<{ id: string; digest: string }>>(Prisma.sql`
    SELECT t.id::text AS id, md5(concat_ws('|',
      concat_ws(':', t.slug, t.name, t.plan, t.status, t.region, t.suspended_reason),
      (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM projects x WHERE x.tenant_id = t.id),
      (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM deployments x WHERE x.tenant_id = t.id),
      (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM workflows x WHERE x.tenant_id = t.id),
      (SELECT string_agg(concat_ws(':', m.id, m.user_id, m.role, m.updated_at, u.email, u.auth_subject, u.is_platform_admin, u.name), ',' ORDER BY m.id)
         FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = t.id),
      (SELECT string_agg(concat_ws(':', k.id, k.name, k.role, k.prefix, k.secret_hash, k.previous_secret_hash, k.previous_expires_at, k.expires_at, k.revoked_at), ',' ORDER BY k.id)
         FROM api_keys k WHERE k.tenant_id = t.id),
      (SELECT string_agg(x::text, ',' ORDER BY x.id) FROM audit_log x WHERE x.tenant_id = t.id),
      (SELECT string_agg(x::text, ',' ORDER BY x.resource) FROM tenant_limit_overrides x WHERE x.tenant_id = t.id)
    )) AS digest
    FROM tenants t WHERE t.id = ${tenantId}::uuid`);
}

// ---------------------------------------------------------------------------
// Picking targets at run time: commands carry numbers, the model gives them meaning.

type Pick = { foreign: boolean; n: number };
const pickArb: fc.Arbitrary<Pick> = fc.record({ foreign: fc.boolean(), n: fc.nat() });

function pickTenant(model: Model, actor: Actor, pick: Pick): TenantModel {
  if (!pick.foreign) return model.tenants[actor.tenant]!;
  const others = model.tenants.filter((_, i) => i !== actor.tenant);
  return others[pick.n % others.length]!;
}
function pickFrom<T>(items: Iterable<T>, n: number): T | undefined {
  const list = [...items];
  return list.length ? list[n % list.length] : undefined;
}
/** An id of `type` in the picked tenant (or a random id when it has none). */
function pickId(model: Model, actor: Actor, type: NodeType, pick: Pick, exclude?: string): string {
  const t = pickTenant(model, actor, pick);
  const pool: Record<NodeType, () => Iterable<string>> = {
    Project: () => t.projects.keys(),
    Deployment: () => t.deployments.keys(),
    Workflow: () => t.workflows.keys(),
    ApiKey: () => [...t.apiKeys].filter((id) => id !== exclude),
    Membership: () => [...t.memberships.keys()].filter((id) => id !== exclude),
    User: () => [...t.memberships.values()].map((m) => m.userId),
    Tenant: () => [t.id],
    AuditLogEntry: () =>
      [...model.owner.entries()].flatMap(([g, i]) => {
        const parsed = i === model.tenants.indexOf(t) ? parseGid(g) : null;
        return parsed?.type === "AuditLogEntry" ? [parsed.id] : [];
      }),
  };
  return gid(type, pickFrom(pool[type](), pick.n) ?? randomUUID());
}

// ---------------------------------------------------------------------------
// Checking an answer.

function tenantOfUser(model: Model, userId: string): Set<number> {
  const out = new Set<number>();
  model.tenants.forEach((t, i) => {
    for (const m of t.memberships.values()) if (m.userId === userId) out.add(i);
  });
  return out;
}

async function ownerOf(env: ModelEnv, model: Model, type: NodeType, id: string): Promise<number | undefined> {
  const g = gid(type, id);
  const known = model.owner.get(g);
  if (known !== undefined) return known;
  // Rows the model never saw created (audit entries are written as a side
  // effect): ask the database, through the platform role.
  const table = { Project: "projects", Deployment: "deployments", Workflow: "workflows", ApiKey: "api_keys", Membership: "memberships", AuditLogEntry: "audit_log" }[
    type as Exclude<NodeType, "User" | "Tenant">
  ];
  let i = -1;
  // Every place a tenant's rows live (the shared tables and each placement).
  for (const db of new Set(env.rows)) {
    const rows = await db.$queryRawUnsafe<Array<{ tenant_id: string }>>(`SELECT tenant_id::text FROM ${table} WHERE id = $1::uuid`, id);
    if (rows[0]) i = env.tenantIds.indexOf(rows[0].tenant_id);
    if (i >= 0) break;
  }
  if (i >= 0) model.owner.set(g, i);
  return i >= 0 ? i : undefined;
}

/** Every id anywhere in `data` must be the caller's tenant's. */
async function checkAnswer(real: Real, model: Model, actor: Actor, label: string, data: unknown): Promise<void> {
  const found: Array<{ type: NodeType; id: string }> = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (!v || typeof v !== "object") return;
    for (const [k, x] of Object.entries(v as Obj)) {
      // Only `id`: actorId/targetId are history (a removed member, a deleted row).
      if (typeof x === "string" && k === "id") {
        const parsed = parseGid(x);
        if (parsed) found.push(parsed);
      } else if (k === "cursor" || k === "endCursor" || k === "startCursor") {
        if (typeof x === "string") model.cursors.push(x);
      } else walk(x);
    }
  };
  walk(data);
  for (const { type, id } of found) {
    let ok: boolean;
    if (type === "Tenant") ok = id === model.tenants[actor.tenant]!.id;
    else if (type === "User") ok = id === actor.userId || tenantOfUser(model, id).has(actor.tenant);
    else ok = (await ownerOf(real.env, model, type, id)) === actor.tenant;
    if (!ok) real.stats.violations.push(`${label}: ${actor.name} was answered ${type} ${id}, not of its tenant`);
  }
}

function checkCount(real: Real, actor: Actor, label: string, got: unknown, expected: number) {
  if (typeof got === "number" && got !== expected) real.stats.violations.push(`${label}: ${actor.name} counted ${got}, the model ${expected}`);
}

// ---------------------------------------------------------------------------
// Commands.

interface OpResult {
  data: Obj | null | undefined;
  errors: Array<{ extensions?: { code?: string } }> | undefined;
}

async function gql(real: Real, actor: Actor, query: string, variables: Obj): Promise<OpResult> {
  const res = await real.env.app.fetch("http://localhost/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", ...actor.headers },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as OpResult;
  real.stats.operations++;
  if (body.data && Object.values(body.data).some((v) => v !== null)) real.stats.answered++;
  for (const e of body.errors ?? []) {
    const code = e.extensions?.code ?? "NONE";
    real.stats.errorCodes[code] = (real.stats.errorCodes[code] ?? 0) + 1;
    if (code === "INTERNAL_SERVER_ERROR" && process.env.MODEL_DEBUG) console.log("INTERNAL", actor.name, query, JSON.stringify(variables));
  }
  return body;
}

const PAGE = `pageInfo { endCursor startCursor hasNextPage } totalCount`;
const DEPLOYMENT = `id status project { id } createdBy { id email }`;
const PROJECT_FIELDS = `id name slug deploymentCount latestDeployment { ${DEPLOYMENT} }
  deployments(first: 3) { totalCount edges { cursor node { ${DEPLOYMENT} } } }
  workflows(first: 3) { totalCount edges { cursor node { id status project { id } } } }`;
const NODE = `__typename id
  ... on Project { ${PROJECT_FIELDS} }
  ... on Deployment { ${DEPLOYMENT} }
  ... on Workflow { workflowStatus: status workflowProject: project { id } }
  ... on ApiKey { name prefix }
  ... on Membership { role user { id email } membershipTenant: tenant { id } }
  ... on AuditLogEntry { action actorId targetId auditTenant: tenant { id } }
  ... on User { email }
  ... on Tenant { slug }`;

/** Model counts of a project's children, for the nested totalCounts. */
function checkProject(real: Real, model: Model, actor: Actor, label: string, p: Obj | null | undefined) {
  if (!p?.id) return;
  const id = parseGid(p.id)?.id;
  const t = model.tenants[actor.tenant]!;
  if (!id || !t.projects.has(id)) return; // reported by checkAnswer
  const deployments = [...t.deployments.values()].filter((d) => d.projectId === id).length;
  checkCount(real, actor, `${label}.deploymentCount`, p.deploymentCount, deployments);
  checkCount(real, actor, `${label}.deployments`, p.deployments?.totalCount, deployments);
  checkCount(real, actor, `${label}.workflows`, p.workflows?.totalCount, [...t.workflows.values()].filter((w) => w.projectId === id).length);
}

type Cmd = fc.AsyncCommand<Model, Real>;

abstract class Op implements Cmd {
  constructor(readonly actorN: number) {}
  abstract label: string;
  check = () => true;
  actor(real: Real): Actor {
    return real.env.actors[this.actorN % real.env.actors.length]!;
  }
  abstract exec(model: Model, real: Real, actor: Actor): Promise<void>;
  readonly mutation: boolean = false;
  async run(model: Model, real: Real): Promise<void> {
    const actor = this.actor(real);
    const before = this.mutation ? (real.digest ??= await digests(real.env)) : undefined;
    await this.exec(model, real, actor);
    if (before) {
      real.stats.mutations++;
      const after = (real.digest = await digests(real.env));
      after.tenants.forEach((d, i) => {
        if (i !== actor.tenant && d !== before.tenants[i]) real.stats.violations.push(`${this.label}: ${actor.name} changed tenant ${model.tenants[i]!.slug}`);
      });
      for (const [id, d] of before.users) {
        if (after.users.get(id) !== d) real.stats.violations.push(`${this.label}: ${actor.name} changed or removed the identity of user ${id}`);
      }
    }
  }
  toString() {
    return `${this.label}#${this.actorN}`;
  }
}

const cursorOf = (model: Model, n: number | null) => (n === null ? null : (pickFrom(model.cursors, n) ?? null));

class ListProjects extends Op {
  label = "projects";
  constructor(actorN: number, readonly first: number, readonly cursor: number | null, readonly search: string | null, readonly order: string | null) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const r = await gql(real, actor, `query($first: Int, $after: String, $filter: ProjectFilter, $orderBy: ProjectOrder) {
        projects(first: $first, after: $after, filter: $filter, orderBy: $orderBy) { ${PAGE} edges { cursor node { ${PROJECT_FIELDS} } } } }`, {
      first: this.first,
      after: cursorOf(model, this.cursor),
      filter: this.search === null ? null : { search: this.search },
      orderBy: this.order === null ? null : { field: this.order, direction: "ASC" },
    });
    await checkAnswer(real, model, actor, this.label, r.data);
    const t = model.tenants[actor.tenant]!;
    const s = this.search?.trim().toLowerCase();
    const expected = [...t.projects.values()].filter((p) => !s || p.name.toLowerCase().includes(s) || p.slug.toLowerCase().includes(s)).length;
    checkCount(real, actor, this.label, r.data?.projects?.totalCount, expected);
    for (const e of r.data?.projects?.edges ?? []) checkProject(real, model, actor, this.label, e.node);
  }
}

class ListDeployments extends Op {
  label = "deployments";
  constructor(actorN: number, readonly first: number, readonly cursor: number | null, readonly statuses: string[] | null, readonly project: Pick | null) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const projectId = this.project ? pickId(model, actor, "Project", this.project) : null;
    const r = await gql(real, actor, `query($first: Int, $after: String, $filter: DeploymentFilter) {
        deployments(first: $first, after: $after, filter: $filter) { ${PAGE} edges { cursor node { ${DEPLOYMENT} } } } }`, {
      first: this.first,
      after: cursorOf(model, this.cursor),
      filter: { status: this.statuses, projectId },
    });
    await checkAnswer(real, model, actor, this.label, r.data);
    const pid = projectId ? parseGid(projectId)!.id : null;
    const expected = [...model.tenants[actor.tenant]!.deployments.values()].filter(
      (d) => (!this.statuses || this.statuses.includes(d.status)) && (!pid || d.projectId === pid),
    ).length;
    checkCount(real, actor, this.label, r.data?.deployments?.totalCount, expected);
  }
}

class ListWorkflows extends Op {
  label = "workflows";
  constructor(actorN: number, readonly first: number, readonly cursor: number | null, readonly status: string | null) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const r = await gql(real, actor, `query($first: Int, $after: String, $filter: WorkflowFilter) {
        workflows(first: $first, after: $after, filter: $filter) { ${PAGE} edges { cursor node { id status project { id name } } } } }`, {
      first: this.first,
      after: cursorOf(model, this.cursor),
      filter: this.status ? { status: this.status } : null,
    });
    await checkAnswer(real, model, actor, this.label, r.data);
    const expected = [...model.tenants[actor.tenant]!.workflows.values()].filter((w) => !this.status || w.status === this.status).length;
    checkCount(real, actor, this.label, r.data?.workflows?.totalCount, expected);
  }
}

class ListOther extends Op {
  label: string;
  constructor(actorN: number, readonly list: "members" | "apiKeys" | "auditLog" | "tenant", readonly cursor: number | null) {
    super(actorN);
    this.label = list;
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const queries = {
      members: `members(first: 50, after: $after) { ${PAGE} edges { cursor node { id role user { id email } tenant { id } } } }`,
      apiKeys: `apiKeys(first: 50, after: $after) { ${PAGE} edges { cursor node { id name prefix } } }`,
      auditLog: `auditLog(first: 20, after: $after) { ${PAGE} edges { cursor node { id action actorId targetId tenant { id } } } }`,
      tenant: `tenant { id slug }`,
    };
    const uses = this.list !== "tenant";
    const r = await gql(real, actor, `query${uses ? "($after: String)" : ""} { ${queries[this.list]} }`, uses ? { after: cursorOf(model, this.cursor) } : {});
    await checkAnswer(real, model, actor, this.label, r.data);
    const t = model.tenants[actor.tenant]!;
    if (this.list === "members") checkCount(real, actor, this.label, r.data?.members?.totalCount, t.memberships.size);
    if (this.list === "apiKeys") checkCount(real, actor, this.label, r.data?.apiKeys?.totalCount, t.apiKeys.size);
  }
}

class NodeOp extends Op {
  label = "node";
  constructor(actorN: number, readonly type: NodeType, readonly target: Pick) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const id = pickId(model, actor, this.type, this.target);
    const r = await gql(real, actor, `query($id: ID!) { node(id: $id) { ${NODE} } }`, { id });
    await checkAnswer(real, model, actor, `node(${this.type})`, r.data);
    if (r.data?.node?.__typename === "Project") checkProject(real, model, actor, "node(Project)", r.data.node);
  }
}

class NodesOp extends Op {
  label = "nodes";
  constructor(actorN: number, readonly targets: Array<{ type: NodeType; pick: Pick }>) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const ids = this.targets.map((t) => pickId(model, actor, t.type, t.pick));
    const r = await gql(real, actor, `query($ids: [ID!]!) { nodes(ids: $ids) { ${NODE} } }`, { ids });
    await checkAnswer(real, model, actor, "nodes", r.data);
  }
}

// --- mutations --------------------------------------------------------------

abstract class Mutation extends Op {
  override readonly mutation = true;
  /** A mutation naming a foreign row must not be acknowledged. */
  refused(real: Real, actor: Actor, r: OpResult, field: string, foreign: boolean): boolean {
    const ok = !!r.data?.[field];
    if (ok && foreign) real.stats.violations.push(`${this.label}: ${actor.name} was acknowledged on another tenant's row`);
    return !ok;
  }
  /** `mutation { <field>(input: $i) { <selection> } }`, answer checked: the payload when acknowledged, else null. */
  async send(model: Model, real: Real, actor: Actor, input: Obj, selection: string, foreign: boolean): Promise<Obj | null> {
    const field = this.label;
    const r = await gql(real, actor, `mutation($i: ${field[0]!.toUpperCase()}${field.slice(1)}Input!) { ${field}(input: $i) { ${selection} } }`, { i: input });
    await checkAnswer(real, model, actor, field, r.data);
    return this.refused(real, actor, r, field, foreign) ? null : (r.data![field] as Obj);
  }
}

class CreateProject extends Mutation {
  label = "createProject";
  constructor(actorN: number, readonly name: string) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const p = (await this.send(model, real, actor, { name: `${this.name} ${randomUUID().slice(0, 8)}` }, "project { id name slug }", false))?.project;
    if (!p) return;
    model.tenants[actor.tenant]!.projects.set(parseGid(p.id)!.id, { name: p.name, slug: p.slug });
    model.owner.set(p.id, actor.tenant);
  }
}

class UpdateProject extends Mutation {
  label = "updateProject";
  constructor(actorN: number, readonly target: Pick, readonly name: string) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const id = pickId(model, actor, "Project", this.target);
    const input = { id, name: `${this.name} ${randomUUID().slice(0, 4)}` };
    const p = (await this.send(model, real, actor, input, "project { id name slug }", this.target.foreign))?.project;
    if (p) model.tenants[actor.tenant]!.projects.set(parseGid(p.id)!.id, { name: p.name, slug: p.slug });
  }
}

class DeleteProject extends Mutation {
  label = "deleteProject";
  constructor(actorN: number, readonly target: Pick) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const id = pickId(model, actor, "Project", this.target);
    if (!(await this.send(model, real, actor, { id }, "deletedProjectId", this.target.foreign))) return;
    const t = model.tenants[actor.tenant]!;
    const pid = parseGid(id)!.id;
    t.projects.delete(pid);
    for (const [d, row] of t.deployments) if (row.projectId === pid) t.deployments.delete(d);
    for (const w of t.workflows.values()) if (w.projectId === pid) w.projectId = null;
  }
}

class CreateDeployment extends Mutation {
  label = "createDeployment";
  constructor(actorN: number, readonly target: Pick) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const projectId = pickId(model, actor, "Project", this.target);
    const d = (await this.send(model, real, actor, { projectId, branch: "model" }, `deployment { ${DEPLOYMENT} }`, this.target.foreign))?.deployment;
    if (!d) return;
    model.tenants[actor.tenant]!.deployments.set(parseGid(d.id)!.id, { projectId: parseGid(projectId)!.id, status: d.status });
    model.owner.set(d.id, actor.tenant);
  }
}

class UpdateDeploymentStatus extends Mutation {
  label = "updateDeploymentStatus";
  constructor(actorN: number, readonly target: Pick, readonly status: string) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const id = pickId(model, actor, "Deployment", this.target);
    const d = (await this.send(model, real, actor, { id, status: this.status }, `deployment { ${DEPLOYMENT} }`, this.target.foreign))?.deployment;
    const row = d && model.tenants[actor.tenant]!.deployments.get(parseGid(d.id)!.id);
    if (row) row.status = d.status;
  }
}

class CreateWorkflow extends Mutation {
  label = "createWorkflow";
  constructor(actorN: number, readonly target: Pick | null) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const projectId = this.target ? pickId(model, actor, "Project", this.target) : null;
    const input = { name: "model wf", projectId, config: { steps: ["x"] } };
    const w = (await this.send(model, real, actor, input, "workflow { id status project { id } }", !!this.target?.foreign))?.workflow;
    if (!w) return;
    model.tenants[actor.tenant]!.workflows.set(parseGid(w.id)!.id, { projectId: projectId ? parseGid(projectId)!.id : null, status: w.status });
    model.owner.set(w.id, actor.tenant);
  }
}

class UpdateWorkflow extends Mutation {
  label = "updateWorkflow";
  constructor(actorN: number, readonly target: Pick, readonly status: string) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const id = pickId(model, actor, "Workflow", this.target);
    const w = (await this.send(model, real, actor, { id, status: this.status }, "workflow { id status project { id } }", this.target.foreign))?.workflow;
    const row = w && model.tenants[actor.tenant]!.workflows.get(parseGid(w.id)!.id);
    if (row) row.status = w.status;
  }
}

class DeleteWorkflow extends Mutation {
  label = "deleteWorkflow";
  constructor(actorN: number, readonly target: Pick) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const id = pickId(model, actor, "Workflow", this.target);
    if (await this.send(model, real, actor, { id }, "deletedWorkflowId", this.target.foreign)) model.tenants[actor.tenant]!.workflows.delete(parseGid(id)!.id);
  }
}

class InviteMember extends Mutation {
  label = "inviteMember";
  /** n: an existing e-mail (often another tenant's member) or a new one. */
  constructor(actorN: number, readonly n: number, readonly fresh: boolean, readonly role: Role) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const email = this.fresh ? `invitee-${randomUUID().slice(0, 8)}@model.test` : pickFrom(model.emails, this.n)!;
    const r = await gql(real, actor, `mutation($i: InviteMemberInput!) { inviteMember(input: $i) { membership { id role user { id email } tenant { id } } } }`, {
      i: { email, role: this.role, name: "Invitee" },
    });
    const m = r.data?.inviteMember?.membership;
    if (m) {
      // The invitee is a member now: record it before checking the answer.
      model.tenants[actor.tenant]!.memberships.set(parseGid(m.id)!.id, { userId: parseGid(m.user.id)!.id, role: m.role });
      model.owner.set(m.id, actor.tenant);
      if (!model.emails.includes(email)) model.emails.push(email);
    }
    await checkAnswer(real, model, actor, this.label, r.data);
  }
}

/** Own targets spare the callers' memberships and keys (the run keeps its callers); foreign ones may hit anyone. */
function spared(real: Real, target: Pick, id: string): boolean {
  return !target.foreign && real.env.actors.some((a) => a.protectedId === parseGid(id)!.id);
}

class UpdateMemberRole extends Mutation {
  label = "updateMemberRole";
  constructor(actorN: number, readonly target: Pick, readonly role: Role) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const id = pickId(model, actor, "Membership", this.target);
    if (spared(real, this.target, id)) return;
    const m = (await this.send(model, real, actor, { membershipId: id, role: this.role }, "membership { id role user { id } }", this.target.foreign))?.membership;
    const row = m && model.tenants[actor.tenant]!.memberships.get(parseGid(id)!.id);
    if (row) row.role = m.role;
  }
}

class RemoveMember extends Mutation {
  label = "removeMember";
  constructor(actorN: number, readonly target: Pick) {
    super(actorN);
  }
  async exec(model: Model, real: Real, actor: Actor) {
    const id = pickId(model, actor, "Membership", this.target);
    if (spared(real, this.target, id)) return;
    if (await this.send(model, real, actor, { membershipId: id }, "removedMembershipId", this.target.foreign)) {
      model.tenants[actor.tenant]!.memberships.delete(parseGid(id)!.id);
    }
  }
}

class ApiKeyOp extends Mutation {
  label: string;
  constructor(actorN: number, readonly kind: "create" | "revoke" | "rotate", readonly target: Pick) {
    super(actorN);
    this.label = `${kind}ApiKey`;
  }
  async exec(model: Model, real: Real, actor: Actor) {
    if (this.kind === "create") {
      const k = (await this.send(model, real, actor, { name: "model key", role: "VIEWER" }, "apiKey { id }", false))?.apiKey;
      if (k) {
        model.tenants[actor.tenant]!.apiKeys.add(parseGid(k.id)!.id);
        model.owner.set(k.id, actor.tenant);
      }
      return;
    }
    const id = pickId(model, actor, "ApiKey", this.target);
    if (spared(real, this.target, id)) return;
    await this.send(model, real, actor, { id }, "apiKey { id revokedAt }", this.target.foreign);
  }
}

// ---------------------------------------------------------------------------
// The arbitraries.

const actorArb = fc.nat();
const firstArb = fc.integer({ min: 1, max: 12 });
const cursorArb = fc.option(fc.nat(), { nil: null, freq: 2 });
const nodeTypeArb = fc.constantFrom<NodeType>(...TYPES);
const deploymentStatusArb = fc.constantFrom("QUEUED", "BUILDING", "READY", "ERROR", "CANCELED");
const workflowStatusArb = fc.constantFrom("ACTIVE", "PAUSED", "ARCHIVED");
const roleArb = fc.constantFrom<Role>("VIEWER", "DEVELOPER", "ADMIN", "OWNER");
const wordArb = fc.constantFrom("Web", "API", "Worker", "Docs", "web", "a", "Acme", "Globex", "Wayne", "model", "%", "_");

const readArbs: fc.Arbitrary<Cmd>[] = [
  fc
    .tuple(actorArb, firstArb, cursorArb, fc.option(wordArb, { nil: null }), fc.option(fc.constantFrom("NAME", "CREATED_AT", "UPDATED_AT"), { nil: null }))
    .map(([a, f, c, s, o]) => new ListProjects(a, f, c, s, o)),
  fc
    .tuple(actorArb, firstArb, cursorArb, fc.option(fc.uniqueArray(deploymentStatusArb, { minLength: 1, maxLength: 3 }), { nil: null }), fc.option(pickArb, { nil: null }))
    .map(([a, f, c, s, p]) => new ListDeployments(a, f, c, s, p)),
  fc.tuple(actorArb, firstArb, cursorArb, fc.option(workflowStatusArb, { nil: null })).map(([a, f, c, s]) => new ListWorkflows(a, f, c, s)),
  fc.tuple(actorArb, fc.constantFrom("members", "apiKeys", "auditLog", "tenant") as fc.Arbitrary<"members">, cursorArb).map(([a, l, c]) => new ListOther(a, l, c)),
  fc.tuple(actorArb, nodeTypeArb, pickArb).map(([a, t, p]) => new NodeOp(a, t, p)),
  fc.tuple(actorArb, fc.array(fc.record({ type: nodeTypeArb, pick: pickArb }), { minLength: 1, maxLength: 6 })).map(([a, ts]) => new NodesOp(a, ts)),
];

const mutationArbs: fc.Arbitrary<Cmd>[] = [
  fc.tuple(actorArb, wordArb).map(([a, n]) => new CreateProject(a, n)),
  fc.tuple(actorArb, pickArb, wordArb).map(([a, p, n]) => new UpdateProject(a, p, n)),
  fc.tuple(actorArb, pickArb).map(([a, p]) => new DeleteProject(a, p)),
  fc.tuple(actorArb, pickArb).map(([a, p]) => new CreateDeployment(a, p)),
  fc.tuple(actorArb, pickArb, deploymentStatusArb).map(([a, p, s]) => new UpdateDeploymentStatus(a, p, s)),
  fc.tuple(actorArb, fc.option(pickArb, { nil: null })).map(([a, p]) => new CreateWorkflow(a, p)),
  fc.tuple(actorArb, pickArb, workflowStatusArb).map(([a, p, s]) => new UpdateWorkflow(a, p, s)),
  fc.tuple(actorArb, pickArb).map(([a, p]) => new DeleteWorkflow(a, p)),
  fc.tuple(actorArb, fc.nat(), fc.boolean(), roleArb).map(([a, n, f, r]) => new InviteMember(a, n, f, r)),
  fc.tuple(actorArb, pickArb, roleArb).map(([a, p, r]) => new UpdateMemberRole(a, p, r)),
  fc.tuple(actorArb, pickArb).map(([a, p]) => new RemoveMember(a, p)),
  fc.tuple(actorArb, fc.constantFrom("create", "revoke", "rotate") as fc.Arbitrary<"create">, pickArb).map(([a, k, p]) => new ApiKeyOp(a, k, p)),
];

/** Reads twice as likely as any one mutation: about half the operations read. */
export const commandArbs: fc.Arbitrary<Cmd>[] = [...readArbs, ...readArbs, ...mutationArbs];

/** End of a run: every row the model holds is in the database, in the tenant the model says. */
async function compareWithDatabase(env: ModelEnv, model: Model, stats: RunStats) {
  const fresh = await loadModel(env);
  const keys = (t: TenantModel) => ({
    projects: [...t.projects.keys()].sort(),
    deployments: [...t.deployments.entries()].map(([id, d]) => `${id}:${d.projectId}:${d.status}`).sort(),
    workflows: [...t.workflows.entries()].map(([id, w]) => `${id}:${w.projectId}:${w.status}`).sort(),
    memberships: [...t.memberships.entries()].map(([id, m]) => `${id}:${m.userId}:${m.role}`).sort(),
    apiKeys: [...t.apiKeys].sort(),
  });
  model.tenants.forEach((t, i) => {
    const want = JSON.stringify(keys(t));
    const got = JSON.stringify(keys(fresh.tenants[i]!));
    if (want !== got) stats.violations.push(`end of run: tenant ${t.slug} in the database differs from the model`);
  });
}

export interface ModelRunOptions {
  /** Total operations to run (at least). */
  operations: number;
  /** Commands per fast-check run (the model is re-read from the database between runs). */
  perRun?: number;
  seed?: number;
}

export async function runIsolationModel(env: ModelEnv, opts: ModelRunOptions): Promise<RunStats & { runs: number; seed: number }> {
  const stats: RunStats = { operations: 0, mutations: 0, answered: 0, violations: [], errorCodes: {} };
  const perRun = opts.perRun ?? 100;
  const seed = opts.seed ?? Date.now() % 2 ** 31;
  let runs = 0;
  while (stats.operations < opts.operations) {
    const remaining = opts.operations - stats.operations;
    const size = Math.min(perRun, remaining);
    await fc.assert(
      fc.asyncProperty(fc.commands(commandArbs, { size: "max", maxCommands: size }), async (cmds) => {
        const model = await loadModel(env);
        await fc.asyncModelRun(() => ({ model, real: { env, stats } }), cmds);
        await compareWithDatabase(env, model, stats);
      }),
      { numRuns: 1, seed: seed + runs, endOnFailure: true },
    );
    runs++;
  }
  return { ...stats, runs, seed };
}
