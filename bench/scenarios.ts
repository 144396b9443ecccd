import { signDevToken } from "../src/tenancy/tokens.ts";
import type { RequestGenerator } from "./load.ts";
import type { BenchTenant, Fixture } from "./seed.ts";

/** The operations of SPEC section 9 and the tokens that send them. */

export const dashboardQuery = (projects = 20) => `query Dashboard {
  projects(first: ${projects}) {
    edges {
      node {
        id
        name
        slug
        deploymentCount
        latestDeployment { id status createdAt }
        deployments(first: 5) {
          edges { node { id status branch commitSha createdAt createdBy { email } } }
        }
      }
    }
  }
}`;

export const DEPLOYMENTS_PAGE_QUERY = `query DeploymentsPage($after: String) {
  deployments(first: 50, after: $after) {
    totalCount
    edges { cursor node { id status branch commitSha createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const CREATE_DEPLOYMENT_MUTATION = `mutation CreateDeployment($input: CreateDeploymentInput!) {
  createDeployment(input: $input) { deployment { id status createdAt } }
}`;

/** Tried in order: the first the schema accepts is used (the Platform type is new). */
export const TENANT_USAGE_QUERIES = [
  `query TenantUsage {
  platform {
    tenantUsage(first: 100) {
      edges { node { tenant { slug } members projects deployments workflows apiRequests deploymentsByStatus { status count } } }
    }
  }
}`,
  `query TenantUsage {
  platform {
    tenantUsage(first: 100) {
      edges { node { tenant { slug } members projects deployments workflows apiRequests } }
    }
  }
}`,
];

const body = (query: string, variables?: Record<string, unknown>) => JSON.stringify(variables ? { query, variables } : { query });
export const toGlobalId = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString("base64");

export interface Tokens {
  /** Every member of each tenant: tenant-major, so i -> tenant i % n. */
  members: { tenant: BenchTenant; token: string }[][];
  developers: { tenant: BenchTenant; token: string }[][];
  admin: string;
}

export async function signTokens(fixture: Fixture, secret: string): Promise<Tokens> {
  const sign = (sub: string, tenant?: string) => signDevToken({ secret, sub, tenant, ttl: "6h" });
  const members = await Promise.all(
    fixture.tenants.map((t) => Promise.all(t.members.map(async (m) => ({ tenant: t, token: await sign(m.email, t.slug) })))),
  );
  const developers = await Promise.all(
    fixture.tenants.map((t) =>
      Promise.all(t.members.filter((m) => m.role === "DEVELOPER").map(async (m) => ({ tenant: t, token: await sign(m.email, t.slug) }))),
    ),
  );
  return { members, developers, admin: await sign(fixture.adminSubject) };
}

/** The same tokens without one tenant's (the noisy neighbour keeps a real rate limit). */
export function withoutTenant(tokens: Tokens, slug: string): Tokens {
  const keep = (table: { tenant: BenchTenant; token: string }[][]) => table.filter((row) => row[0]?.tenant.slug !== slug);
  return { members: keep(tokens.members), developers: keep(tokens.developers), admin: tokens.admin };
}

/** i -> tenant i % n, member (i / n) % members: every tenant and member in turn. */
function pick<T>(table: T[][], i: number): T {
  const row = table[i % table.length]!;
  return row[Math.floor(i / table.length) % row.length]!;
}

export function dashboardGen(tokens: Tokens, tenantSlugs?: Set<string>, projects = 20): RequestGenerator {
  const table = tenantSlugs ? tokens.members.filter((r) => tenantSlugs.has(r[0]!.tenant.slug)) : tokens.members;
  const b = body(dashboardQuery(projects));
  return (i) => ({ body: b, token: pick(table, i).token });
}

/** Even i: first page of a tenant; odd i: its second page (cursor fetched beforehand). */
export function paginationGen(tokens: Tokens, cursors: Map<string, string>): RequestGenerator {
  const first = body(DEPLOYMENTS_PAGE_QUERY);
  const second = new Map([...cursors].map(([slug, cursor]) => [slug, body(DEPLOYMENTS_PAGE_QUERY, { after: cursor })]));
  return (i) => {
    const m = pick(tokens.members, Math.floor(i / 2));
    return { body: i % 2 === 0 ? first : second.get(m.tenant.slug)!, token: m.token };
  };
}

/**
 * 9 dashboards, then one createDeployment by a DEVELOPER (10%). The k-th
 * mutation's caller and project follow from the request number alone, so
 * the statement count's second pass (countRepeats) replays the callers the
 * first warmed (their directory entries cached), as the steady state does.
 */
export function mutationMixGen(tokens: Tokens): RequestGenerator {
  const dash = dashboardGen(tokens);
  return (i) => {
    if (i % 10 !== 9) return dash(i);
    const k = Math.floor(i / 10);
    const d = pick(tokens.developers, k);
    const projectId = d.tenant.projectIds[(k + 1) % d.tenant.projectIds.length]!;
    return {
      token: d.token,
      body: body(CREATE_DEPLOYMENT_MUTATION, {
        input: { projectId: toGlobalId("Project", projectId), branch: "bench", commitSha: `bench${i}` },
      }),
    };
  };
}

/** The dashboard, allowed to use the response cache; i -> tenant i % n, member (i / n) % members. */
export function cachedDashboardGen(tokens: Tokens): RequestGenerator {
  const b = body(dashboardQuery());
  return (i) => ({ body: b, token: pick(tokens.members, i).token, cache: true });
}

/** Requests of cachedDashboardGen that visit every (tenant, member) once. */
export const memberCount = (tokens: Tokens) => tokens.members.reduce((n, row) => n + row.length, 0);

/**
 * Read-mostly (issue 14): 19 dashboards that may use the response cache,
 * then one createDeployment by a DEVELOPER (5%), rotating over the tenants
 * and their members (every role reads, so each change of a tenant costs a
 * miss per role).
 */
export function readMostlyGen(tokens: Tokens): RequestGenerator {
  const dash = cachedDashboardGen(tokens);
  let n = 0;
  return (i) => {
    if (i % 20 !== 19) return dash(i);
    const d = pick(tokens.developers, n++);
    const projectId = d.tenant.projectIds[n % d.tenant.projectIds.length]!;
    return {
      token: d.token,
      body: body(CREATE_DEPLOYMENT_MUTATION, {
        input: { projectId: toGlobalId("Project", projectId), branch: "bench", commitSha: `cache${i}` },
      }),
    };
  };
}

export function platformGen(tokens: Tokens, query: string): RequestGenerator {
  const b = body(query);
  return () => ({ body: b, token: tokens.admin });
}

export function firstPageGen(tokens: Tokens): RequestGenerator {
  const b = body(DEPLOYMENTS_PAGE_QUERY);
  return (i) => ({ body: b, token: tokens.members[i % tokens.members.length]![0]!.token });
}

/**
 * The slow query of the FREE tenant: a page of its deployments by status,
 * newest updated first, with the total count. No index serves the order
 * within the statuses (by updated_at), so PostgreSQL reads and sorts every
 * matching row of the tenant, and counts them: about 50x the work of a
 * regular tenant's same query, all of it in PostgreSQL (the response is one
 * page of 50, the server's CPU per request is a dashboard's).
 */
export const SLOW_QUERY = `query Slow {
  deployments(first: 50, filter: { status: [READY, ERROR, BUILDING] }, orderBy: { field: UPDATED_AT, direction: DESC }) {
    totalCount
    edges { node { id status branch updatedAt } }
  }
}`;

/** SLOW_QUERY by the members of one tenant (bench/neighbours.ts), in turn. */
export function slowQueryGen(tokens: Tokens, slug: string): RequestGenerator {
  const row = tokens.members.find((r) => r[0]?.tenant.slug === slug);
  if (!row) throw new Error(`no tokens for ${slug}`);
  const b = body(SLOW_QUERY);
  return (i) => ({ body: b, token: row[i % row.length]!.token });
}
