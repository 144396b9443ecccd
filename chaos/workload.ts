import { signDevToken } from "../src/tenancy/tokens.ts";
import { classify, post, rowsIn, type Answer, type Classified, type SeenRow, type Verdict } from "./client.ts";
import type { Replica } from "./replicas.ts";
import { Rng } from "./rng.ts";

/**
 * The load: each client, in a loop, picks a tenant and an operation with its
 * own seeded generator: reads (dashboard, pages, node/nodes with own and
 * foreign ids, cursors of another tenant, members, API keys), mutations with
 * a unique name (createProject, createDeployment), and, sent by the tenant's
 * OWNER, membership and key churn: invite a member, downgrade them, remove
 * them, create an API key, revoke it. A revoked caller (removed, downgraded,
 * key revoked) keeps trying; any success sent after its revocation was
 * acknowledged is stale. Every answer is classified (client.ts), every row it
 * names is remembered with the tenant that saw it (checked against the
 * database at the end), every mutation goes in the ledger.
 */

export type Role = "OWNER" | "ADMIN" | "DEVELOPER" | "VIEWER";
const RANK: Record<Role, number> = { VIEWER: 0, DEVELOPER: 1, ADMIN: 2, OWNER: 3 };

export type CallerState = "active" | "busy" | "downgraded" | "removed" | "revoked" | "unknown";

export interface Caller {
  label: string;
  tenant: TenantModel;
  kind: "member" | "key";
  role: Role;
  headers: Record<string, string>;
  /** Seeded members: never revoked, so any refusal of theirs is wrong. */
  stable: boolean;
  state: CallerState;
  /** State before a churn request took it (restored when the request is refused). */
  before?: CallerState;
  membershipId?: string;
  email?: string;
  apiKeyId?: string;
  /** What was acknowledged last: removed, downgraded (below DEVELOPER) or key revoked. */
  revocation?: "removed" | "downgraded" | "revoked";
  /** performance.now() when its first revocation (any kind) was acknowledged: no mutation of its may succeed after it. */
  writesRevokedAt?: number;
  /** performance.now() when its removal or key revocation was acknowledged: no request of its may succeed after it. */
  readsRevokedAt?: number;
  revokedBy?: string;
  /** performance.now() when the first churn request naming it was sent: its refusals may be right from then on. */
  churnedAt?: number;
}

export interface TenantModel {
  id: string;
  slug: string;
  plan: string;
  projectIds: string[];
  deploymentIds: string[];
  owner: Caller;
  stable: Caller[];
  transients: Caller[];
  keys: Caller[];
  /** API keys refused for this tenant (its plan has no api_access): no key churn. */
  noKeys: boolean;
  cursors: string[];
}

export interface MutationRecord {
  /** The request id of the deciding attempt (the acknowledged one, else the last). */
  requestId: string;
  /** Every attempt's request id (a retry is a new request with the same Idempotency-Key). */
  requestIds: string[];
  attempts: number;
  /** Acknowledged only by a replay of the stored answer (Idempotency-Replayed: true). */
  ackedOnReplay: boolean;
  op: string;
  tenantId: string;
  /** The unique name the stored row carries (project name, deployment branch, invited e-mail, key name). */
  name?: string;
  verdict: Verdict;
  codes: string[];
  /** Cut or timed out on a replica that got SIGTERM after the request was sent. */
  cutByKill: boolean;
  caller: string;
  /** The caller was revoked (acknowledged) before this was sent: must not be stored. */
  byRevoked: boolean;
  /** Path and message of the first error of the answer, if any. */
  error?: string;
}

export interface Violation {
  kind: string;
  at: number;
  detail: Record<string, unknown>;
}

export interface Stats {
  ops: Record<string, number>;
  verdicts: Record<string, number>;
  /** "HTTP code" histogram of every answer. */
  codes: Record<string, number>;
  latencies: number[];
  worst: { ms: number; op: string; requestId: string; replica: string; key: string } | undefined;
  violations: Violation[];
  mutations: MutationRecord[];
  /** Row "Type:uuid" -> tenant ids that saw it, with one request id per tenant. */
  seen: Map<string, Map<string, string>>;
  cutRequests: number;
  cutInFlightBySigterm: number;
  staleProbes: number;
  revocationsAcknowledged: Record<string, number>;
  /** Mutations sent again with their Idempotency-Key after a 503, a connection error or a timeout. */
  retries: { mutationsRetried: number; extraAttempts: number; replays: number };
}

export function newStats(): Stats {
  return {
    ops: {},
    verdicts: {},
    codes: {},
    latencies: [],
    worst: undefined,
    violations: [],
    mutations: [],
    seen: new Map(),
    cutRequests: 0,
    cutInFlightBySigterm: 0,
    staleProbes: 0,
    revocationsAcknowledged: {},
    retries: { mutationsRetried: 0, extraAttempts: 0, replays: 0 },
  };
}

const Q = {
  dashboard: `query ChaosDashboard { projects(first: 10) { edges { node { id name deploymentCount latestDeployment { id status }
    deployments(first: 3) { edges { node { id branch createdBy { id email } } } } } } } }`,
  deployments: `query ChaosDeployments($after: String) { deployments(first: 20, after: $after) {
    edges { cursor node { id branch project { id } } } pageInfo { endCursor hasNextPage } } }`,
  node: `query ChaosNode($id: ID!) { node(id: $id) { id ... on Project { name } ... on Deployment { branch project { id } } ... on Membership { role user { id email } } } }`,
  nodes: `query ChaosNodes($ids: [ID!]!) { nodes(ids: $ids) { id } }`,
  members: `query ChaosMembers { members(first: 50) { edges { node { id role user { id email } } } } }`,
  viewer: `query ChaosViewer { viewer { role user { id email } tenant { id slug } } }`,
  apiKeys: `query ChaosApiKeys { apiKeys(first: 20) { edges { node { id name revokedAt } } } }`,
  workflows: `query ChaosWorkflows { workflows(first: 10) { edges { node { id name project { id } } } } }`,
  probe: `query ChaosProbe { projects(first: 1) { edges { node { id } } } }`,
  createProject: `mutation ChaosCreateProject($input: CreateProjectInput!) { createProject(input: $input) { project { id name } } }`,
  createDeployment: `mutation ChaosCreateDeployment($input: CreateDeploymentInput!) { createDeployment(input: $input) { deployment { id branch project { id } } } }`,
  invite: `mutation ChaosInvite($input: InviteMemberInput!) { inviteMember(input: $input) { membership { id role user { id email } } } }`,
  updateRole: `mutation ChaosUpdateRole($input: UpdateMemberRoleInput!) { updateMemberRole(input: $input) { membership { id role } } }`,
  remove: `mutation ChaosRemove($input: RemoveMemberInput!) { removeMember(input: $input) { removedMembershipId } }`,
  createKey: `mutation ChaosCreateKey($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id name role } secret } }`,
  revokeKey: `mutation ChaosRevokeKey($input: RevokeApiKeyInput!) { revokeApiKey(input: $input) { apiKey { id revokedAt } } }`,
};

/** One request and its judgement. */
export interface Sent {
  answer: Answer;
  c: Classified;
  requestId: string;
  cutByKill: boolean;
}

/** A mutation's attempts, folded: the deciding attempt's answer and verdict. */
export interface Attempted extends Sent {
  requestIds: string[];
  ackedOnReplay: boolean;
}

/** Attempts per mutation: the first and up to 4 retries (about 10 s of waiting, a PostgreSQL restart's worth). */
export const MUTATION_ATTEMPTS = 5;

/** Worth sending again with the same Idempotency-Key: a 503, no answer (cut, refused, timeout), or the key still in use. */
export function retryable(s: Sent): boolean {
  const v = s.c.verdict;
  return v === "unavailable" || v === "cut" || v === "not-sent" || s.answer.transport === "timeout" || s.c.codes.includes("IDEMPOTENCY_KEY_IN_USE");
}

/**
 * The attempts of one mutation as the ledger sees them: acknowledged when
 * any attempt was (that attempt decides); otherwise an attempt that was cut
 * or got a bad answer decides (the server may have stored it without a
 * proper answer: "stored-unacknowledged" if so), else the last one
 * (refused or 503: "stored-refused" if it was stored).
 */
export function foldAttempts(attempts: Sent[]): Attempted | undefined {
  if (!attempts.length) return undefined;
  const ok = attempts.find((a) => a.c.verdict === "ok");
  const unanswered = [...attempts].reverse().find((a) => a.c.verdict === "cut" || a.c.verdict === "bad");
  const decides = ok ?? unanswered ?? attempts[attempts.length - 1]!;
  return {
    ...decides,
    cutByKill: !ok && attempts.some((a) => a.cutByKill),
    requestIds: attempts.map((a) => a.requestId),
    ackedOnReplay: !!ok && ok.answer.headers["idempotency-replayed"] === "true",
  };
}

export const gid = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString("base64");
const rawId = (globalId: string) => Buffer.from(globalId, "base64").toString("utf8").split(":")[1]!;

export interface WorkloadDeps {
  tenants: TenantModel[];
  replicas: Replica[];
  stats: Stats;
  timeoutMs: number;
  jwtSecret: string;
  seed: number;
  /** performance.now() of the start of the load, for violation times (set when the load starts). */
  clock: { t0: number };
}

/** What the operation expects of this caller: a refusal is wrong only when `mayRefuse` is false. */
interface Expect {
  mayRefuse: boolean;
  /** A success sent after this moment (performance.now()) is stale: the caller's revocation was acknowledged then. */
  staleAfter?: number;
}

export class Workload {
  private seq = 0;
  private revokedPool: Caller[] = [];
  constructor(private readonly d: WorkloadDeps) {}

  private nextId(client: number): string {
    return `chaos-${this.d.seed}-${client}-${++this.seq}`;
  }

  /** A replica the load balancer would send to (one is always in rotation, except during a harness bug). */
  private route(rng: Rng): Replica | undefined {
    const live = this.d.replicas.filter((r) => r.inRotation);
    return live.length ? rng.pick(live) : undefined;
  }

  async send(
    rng: Rng,
    client: number,
    op: string,
    caller: Caller,
    query: string,
    variables: Record<string, unknown> | undefined,
    expect: Expect,
    extraHeaders: Record<string, string> = {},
  ): Promise<Sent | undefined> {
    const s = this.d.stats;
    const replica = this.route(rng);
    if (!replica) return undefined;
    const requestId = this.nextId(client);
    const body = JSON.stringify(variables ? { query, variables } : { query });
    const answer = await post(replica, body, { ...caller.headers, ...extraHeaders, "x-request-id": requestId }, this.d.timeoutMs);
    const c = classify(answer);
    const latency = answer.doneAt - answer.sentAt;
    s.ops[op] = (s.ops[op] ?? 0) + 1;
    s.verdicts[c.verdict] = (s.verdicts[c.verdict] ?? 0) + 1;
    s.codes[c.key] = (s.codes[c.key] ?? 0) + 1;
    s.latencies.push(latency);
    if (!s.worst || latency > s.worst.ms) s.worst = { ms: Math.round(latency), op, requestId, replica: replica.name, key: c.key };
    const cutByKill = (c.verdict === "cut" || answer.transport === "timeout") && answer.generation < replica.generation;
    this.judge(op, caller, answer, c, expect, requestId, cutByKill);
    return { answer, c, requestId, cutByKill };
  }

  /**
   * A mutation as a careful client sends it: with an Idempotency-Key, and
   * sent again with the same key (a new request id) after a 503, a
   * connection error, a timeout or IDEMPOTENCY_KEY_IN_USE, up to
   * MUTATION_ATTEMPTS attempts, waiting Retry-After (or 1 s) between them.
   * Every attempt is judged on its own (stale, bad failure, ...); the
   * ledger counts the mutation acknowledged when any attempt was.
   */
  async sendMutation(rng: Rng, client: number, op: string, caller: Caller, query: string, variables: Record<string, unknown>, expect: Expect): Promise<Attempted | undefined> {
    const key = `chaos-${this.d.seed}-${client}-i${++this.seq}`;
    const attempts: Sent[] = [];
    for (let i = 0; i < MUTATION_ATTEMPTS; i++) {
      if (i > 0) {
        const last = attempts[attempts.length - 1]!;
        const after = Number(last.answer.headers["retry-after"]);
        await new Promise((r) => setTimeout(r, Number.isFinite(after) && after > 0 ? Math.min(after, 5) * 1000 : 1000));
      }
      const sent = await this.send(rng, client, op, caller, query, variables, expect, { "idempotency-key": key });
      if (!sent) break;
      attempts.push(sent);
      if (!retryable(sent)) break;
    }
    const folded = foldAttempts(attempts);
    if (folded && attempts.length > 1) {
      this.d.stats.retries.mutationsRetried++;
      this.d.stats.retries.extraAttempts += attempts.length - 1;
    }
    if (folded?.ackedOnReplay) this.d.stats.retries.replays++;
    return folded;
  }

  private violation(kind: string, detail: Record<string, unknown>) {
    this.d.stats.violations.push({ kind, at: Math.round((performance.now() - this.d.clock.t0) / 100) / 10, detail });
  }

  private judge(op: string, caller: Caller, a: Answer, c: Classified, expect: Expect, requestId: string, cutByKill: boolean) {
    const s = this.d.stats;
    const where = { op, requestId, replica: a.replica, caller: caller.label, tenant: caller.tenant.slug };
    if (c.verdict === "bad") this.violation(a.transport === "timeout" ? "hang" : "bad-failure", { ...where, key: c.key, why: c.why, body: a.text.slice(0, 300) });
    if (c.verdict === "cut") {
      s.cutRequests++;
      if (cutByKill) s.cutInFlightBySigterm++;
      this.violation(cutByKill ? "cut-by-sigterm" : "cut", { ...where, error: a.error });
    }
    if (c.verdict === "not-sent") this.violation("not-sent", { ...where, error: a.error, note: "connection refused by a replica in rotation" });
    const churned = !caller.stable && caller.churnedAt !== undefined && caller.churnedAt < a.doneAt;
    if (c.verdict === "refused" && !expect.mayRefuse && !churned) this.violation("wrong-refusal", { ...where, codes: c.codes, message: a.json?.errors?.[0]?.message });
    if (expect.staleAfter !== undefined && a.sentAt > expect.staleAfter) {
      s.staleProbes++;
      if (c.verdict === "ok") {
        this.violation("stale", {
          ...where,
          revocation: caller.revocation,
          revokedBy: caller.revokedBy,
          sentMsAfterRevocationAck: Math.round(a.sentAt - expect.staleAfter),
        });
      }
    }
    if (c.verdict === "ok" || c.verdict === "refused") this.recordRows(caller.tenant, a.json?.data, requestId, op);
  }

  /** Remembers every row of an answer; e-mails and the tenant itself are checked at once. */
  private recordRows(tenant: TenantModel, data: unknown, requestId: string, op: string) {
    if (!data) return;
    const { rows, emails } = rowsIn(data);
    for (const e of emails) {
      if (!e.toLowerCase().endsWith(`@${tenant.slug}.test`)) this.violation("leak", { op, requestId, tenant: tenant.slug, email: e });
    }
    for (const r of rows) this.seeRow(r, tenant.id, requestId, op);
  }

  private seeRow(r: SeenRow, tenantId: string, requestId: string, op: string) {
    if (r.type === "Tenant" && r.id !== tenantId) this.violation("leak", { op, requestId, tenantId, row: `${r.type}:${r.id}` });
    const key = `${r.type}:${r.id}`;
    let by = this.d.stats.seen.get(key);
    if (!by) this.d.stats.seen.set(key, (by = new Map()));
    if (!by.has(tenantId)) by.set(tenantId, requestId);
  }

  private record(r: Omit<MutationRecord, "verdict" | "codes" | "cutByKill" | "requestId" | "requestIds" | "attempts" | "ackedOnReplay">, sent: Attempted | undefined) {
    if (!sent) return;
    const first = sent.answer.json?.errors?.[0];
    const error = first ? `${(first.path ?? []).join(".")}: ${String(first.message).slice(0, 120)}` : undefined;
    this.d.stats.mutations.push({
      ...r,
      requestId: sent.requestId,
      requestIds: sent.requestIds,
      attempts: sent.requestIds.length,
      ackedOnReplay: sent.ackedOnReplay,
      verdict: sent.c.verdict,
      codes: sent.c.codes,
      cutByKill: sent.cutByKill,
      error,
    });
  }

  // ---- callers ---------------------------------------------------------------

  private healthy(t: TenantModel, minRole: Role): Caller[] {
    const all = [...t.stable, ...t.transients, ...t.keys];
    return all.filter((c) => c.state === "active" && RANK[c.role] >= RANK[minRole]);
  }

  // ---- one step of a client ----------------------------------------------------

  async step(rng: Rng, client: number): Promise<void> {
    const t = rng.pick(this.d.tenants);
    const roll = rng.next();
    if (roll < 0.5) return this.read(rng, client, t);
    if (roll < 0.72) return this.mutate(rng, client, t);
    if (roll < 0.8) return this.foreign(rng, client, t);
    if (roll < 0.9) return this.probeRevoked(rng, client) ?? this.read(rng, client, t);
    return this.churn(rng, client, t);
  }

  private async read(rng: Rng, client: number, t: TenantModel) {
    const caller = rng.pick(this.healthy(t, "VIEWER"));
    const kind = rng.int(7);
    const ok: Expect = { mayRefuse: false };
    if (kind === 0) await this.send(rng, client, "read:dashboard", caller, Q.dashboard, undefined, ok);
    else if (kind === 1) {
      const after = t.cursors.length && rng.chance(0.5) ? rng.pick(t.cursors) : undefined;
      const sent = await this.send(rng, client, "read:deployments", caller, Q.deployments, after ? { after } : {}, ok);
      const cursor = sent?.answer.json?.data?.deployments?.pageInfo?.endCursor;
      if (sent?.c.verdict === "ok" && typeof cursor === "string" && t.cursors.length < 20) t.cursors.push(cursor);
    } else if (kind === 2) {
      const own = rng.chance(0.5) ? gid("Project", rng.pick(t.projectIds)) : gid("Deployment", rng.pick(t.deploymentIds));
      await this.send(rng, client, "read:node", caller, Q.node, { id: own }, ok);
    } else if (kind === 3) await this.send(rng, client, "read:members", caller, Q.members, undefined, ok);
    else if (kind === 4) {
      // viewer needs a signed-in user: an API key gets UNAUTHENTICATED, rightly.
      const member = rng.pick(this.healthy(t, "VIEWER").filter((c) => c.kind === "member"));
      await this.send(rng, client, "read:viewer", member, Q.viewer, undefined, ok);
    }
    else if (kind === 5) await this.send(rng, client, "read:workflows", caller, Q.workflows, undefined, ok);
    else {
      const admin = rng.pick(this.healthy(t, "ADMIN"));
      await this.send(rng, client, "read:apiKeys", admin, Q.apiKeys, undefined, ok);
    }
  }

  /** Own reads carrying another tenant's ids or cursors: must answer nothing of it. */
  private async foreign(rng: Rng, client: number, t: TenantModel) {
    const other = rng.pick(this.d.tenants.filter((o) => o !== t));
    const caller = rng.pick(this.healthy(t, "VIEWER"));
    const may: Expect = { mayRefuse: true };
    const kind = rng.int(3);
    const foreignId = rng.chance(0.5) ? gid("Project", rng.pick(other.projectIds)) : gid("Deployment", rng.pick(other.deploymentIds));
    if (kind === 0) await this.send(rng, client, "foreign:node", caller, Q.node, { id: foreignId }, may);
    else if (kind === 1) {
      const own = gid("Project", rng.pick(t.projectIds));
      await this.send(rng, client, "foreign:nodes", caller, Q.nodes, { ids: [own, foreignId, gid("Membership", other.owner.membershipId!)] }, may);
    } else {
      const after = other.cursors.length ? rng.pick(other.cursors) : undefined;
      await this.send(rng, client, "foreign:cursor", caller, Q.deployments, after ? { after } : {}, may);
    }
  }

  private async mutate(rng: Rng, client: number, t: TenantModel) {
    const caller = rng.pick(this.healthy(t, "DEVELOPER"));
    await this.createSomething(rng, client, t, caller, { mayRefuse: false }, false);
  }

  private async createSomething(rng: Rng, client: number, t: TenantModel, caller: Caller, expect: Expect, byRevoked: boolean) {
    const name = `chaos-${this.d.seed}-${client}-m${++this.seq}`;
    if (rng.chance(0.3)) {
      const sent = await this.sendMutation(rng, client, byRevoked ? "probe:createProject" : "write:createProject", caller, Q.createProject, { input: { name } }, expect);
      this.record({ op: "createProject", tenantId: t.id, name, caller: caller.label, byRevoked }, sent);
    } else {
      const projectId = gid("Project", rng.pick(t.projectIds));
      const sent = await this.sendMutation(rng, client, byRevoked ? "probe:createDeployment" : "write:createDeployment", caller, Q.createDeployment, { input: { projectId, branch: name, commitSha: "c0ffee" } }, expect);
      this.record({ op: "createDeployment", tenantId: t.id, name, caller: caller.label, byRevoked }, sent);
    }
  }

  /** A revoked caller tries again: reads (removed or key revoked) or a mutation (any). */
  private probeRevoked(rng: Rng, client: number): Promise<void> | undefined {
    if (!this.revokedPool.length) return undefined;
    const caller = rng.pick(this.revokedPool);
    if (caller.readsRevokedAt !== undefined && rng.chance(0.5)) {
      const expect: Expect = { mayRefuse: true, staleAfter: caller.readsRevokedAt };
      return this.send(rng, client, "probe:read", caller, Q.probe, undefined, expect).then(() => undefined);
    }
    return this.createSomething(rng, client, caller.tenant, caller, { mayRefuse: true, staleAfter: caller.writesRevokedAt }, true);
  }

  // ---- churn: membership and key changes by the OWNER ------------------------------

  async churn(rng: Rng, client: number, t: TenantModel) {
    const live = t.transients.filter((c) => c.state === "active" || c.state === "downgraded");
    const activeKeys = t.keys.filter((c) => c.state === "active");
    if (live.length + t.transients.filter((c) => c.state === "busy").length < 2) return this.invite(rng, client, t);
    if (!t.noKeys && activeKeys.length + t.keys.filter((c) => c.state === "busy").length < 1) return this.createKey(rng, client, t);
    const choices: (() => Promise<void>)[] = [];
    const active = live.filter((c) => c.state === "active");
    if (active.length) choices.push(() => this.downgrade(rng, client, rng.pick(active)));
    if (live.length) choices.push(() => this.remove(rng, client, rng.pick(live)));
    if (activeKeys.length) choices.push(() => this.revokeKey(rng, client, rng.pick(activeKeys)));
    if (choices.length) await rng.pick(choices)();
  }

  private take(victim: Caller) {
    victim.before = victim.state;
    victim.state = "busy";
    victim.churnedAt ??= performance.now();
  }

  /** After a churn request: acknowledged -> `to`; refused -> as before; anything else -> unknown (retired). */
  private settle(victim: Caller, verdict: Verdict | undefined, to: CallerState, requestId: string | undefined, at: number | undefined) {
    if (verdict === "ok") {
      victim.state = to;
      if (to === "removed" || to === "revoked" || to === "downgraded") {
        if (!victim.revocation) this.revokedPool.push(victim);
        victim.revocation = to;
        victim.writesRevokedAt ??= at;
        if (to !== "downgraded") victim.readsRevokedAt = at;
        victim.revokedBy = requestId;
        this.d.stats.revocationsAcknowledged[to] = (this.d.stats.revocationsAcknowledged[to] ?? 0) + 1;
        if (to === "downgraded") victim.role = "VIEWER";
      }
    } else if (verdict === "refused" || verdict === "unavailable" || verdict === "not-sent" || verdict === undefined) {
      victim.state = victim.before ?? "active";
    } else {
      victim.state = "unknown";
    }
  }

  async invite(rng: Rng, client: number, t: TenantModel) {
    const email = `chaos-${this.d.seed}-${client}-u${++this.seq}@${t.slug}.test`;
    const placeholder: Caller = { label: email, tenant: t, kind: "member", role: "DEVELOPER", headers: {}, stable: false, state: "busy", email };
    t.transients.push(placeholder);
    const sent = await this.sendMutation(rng, client, "churn:inviteMember", t.owner, Q.invite, { input: { email, role: "DEVELOPER" } }, { mayRefuse: false });
    this.record({ op: "inviteMember", tenantId: t.id, name: email, caller: t.owner.label, byRevoked: false }, sent);
    const membership = sent?.answer.json?.data?.inviteMember?.membership;
    if (sent?.c.verdict === "ok" && membership?.id) {
      placeholder.membershipId = rawId(membership.id);
      placeholder.headers = { authorization: `Bearer ${await signDevToken({ secret: this.d.jwtSecret, sub: email, tenant: t.slug, ttl: "6h" })}` };
      placeholder.state = "active";
    } else {
      t.transients.splice(t.transients.indexOf(placeholder), 1);
    }
  }

  async createKey(rng: Rng, client: number, t: TenantModel) {
    const name = `chaos-${this.d.seed}-${client}-k${++this.seq}`;
    const placeholder: Caller = { label: `key ${name}`, tenant: t, kind: "key", role: "DEVELOPER", headers: {}, stable: false, state: "busy" };
    t.keys.push(placeholder);
    const sent = await this.sendMutation(rng, client, "churn:createApiKey", t.owner, Q.createKey, { input: { name, role: "DEVELOPER" } }, { mayRefuse: true });
    this.record({ op: "createApiKey", tenantId: t.id, name, caller: t.owner.label, byRevoked: false }, sent);
    const data = sent?.answer.json?.data?.createApiKey;
    if (sent?.c.verdict === "ok" && data?.secret) {
      placeholder.apiKeyId = rawId(data.apiKey.id);
      placeholder.headers = { "x-api-key": data.secret };
      placeholder.state = "active";
      return;
    }
    t.keys.splice(t.keys.indexOf(placeholder), 1);
    if (sent?.c.codes.some((c) => c === "FEATURE_NOT_AVAILABLE" || c === "FORBIDDEN")) t.noKeys = true;
    else if (sent?.c.verdict === "refused") this.violation("wrong-refusal", { op: "createApiKey", requestId: sent.requestId, tenant: t.slug, codes: sent.c.codes });
  }

  private async downgrade(rng: Rng, client: number, victim: Caller) {
    const t = victim.tenant;
    this.take(victim);
    const sent = await this.sendMutation(rng, client, "churn:updateMemberRole", t.owner, Q.updateRole, { input: { membershipId: gid("Membership", victim.membershipId!), role: "VIEWER" } }, { mayRefuse: false });
    this.record({ op: "updateMemberRole", tenantId: t.id, name: victim.email, caller: t.owner.label, byRevoked: false }, sent);
    this.settle(victim, sent?.c.verdict, "downgraded", sent?.requestId, sent?.answer.doneAt);
  }

  private async remove(rng: Rng, client: number, victim: Caller) {
    const t = victim.tenant;
    this.take(victim);
    const sent = await this.sendMutation(rng, client, "churn:removeMember", t.owner, Q.remove, { input: { membershipId: gid("Membership", victim.membershipId!) } }, { mayRefuse: false });
    this.record({ op: "removeMember", tenantId: t.id, name: victim.email, caller: t.owner.label, byRevoked: false }, sent);
    this.settle(victim, sent?.c.verdict, "removed", sent?.requestId, sent?.answer.doneAt);
  }

  private async revokeKey(rng: Rng, client: number, victim: Caller) {
    const t = victim.tenant;
    this.take(victim);
    const sent = await this.sendMutation(rng, client, "churn:revokeApiKey", t.owner, Q.revokeKey, { input: { id: gid("ApiKey", victim.apiKeyId!) } }, { mayRefuse: false });
    this.record({ op: "revokeApiKey", tenantId: t.id, name: victim.label.slice(4), caller: t.owner.label, byRevoked: false }, sent);
    this.settle(victim, sent?.c.verdict, "revoked", sent?.requestId, sent?.answer.doneAt);
  }
}
