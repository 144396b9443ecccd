import type { Config } from "../config.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";
import type { Role } from "../generated/prisma/enums.ts";
import { DEMO_PLATFORM_ADMIN, DEMO_ROLES, DEMO_TENANTS, demoEmail } from "../db/seed.ts";
import { signDevToken } from "../tenancy/tokens.ts";

/**
 * What a developer gets at start outside production: demo tokens for the
 * seeded tenants (GraphiQL's Authorization header holds one) and a banner
 * with the GraphiQL link and a token per tenant and role.
 */

/** The demo tenants are there when the first one's owner is a member of it. */
export async function demoTenantsPresent(platform: PrismaClient): Promise<boolean> {
  const slug = DEMO_TENANTS[0]!.slug;
  const n = await platform.membership.count({ where: { tenant: { slug }, user: { email: demoEmail("OWNER", slug) } } });
  return n > 0;
}

/** Whether a listen address is this machine alone (127.0.0.0/8, ::1, localhost); undefined is every interface. */
export function loopbackOnly(host: string | undefined): boolean {
  if (host === undefined) return false;
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Whether GraphiQL's page may carry a live demo OWNER token: the demo
 * tenants are there outside production, and the server listens on this
 * machine only. With HOST set to an address others reach, anyone who can
 * open the page would be handed the token (review-1330 F9): the page then
 * opens without one, and the console's banner still lists the tokens.
 */
export const servesDemoToken = (config: Pick<Config, "host">, demo: boolean): boolean => demo && loopbackOnly(config.host);

export function demoToken(config: Config, slug: string, role: Role, ttl: string) {
  return signDevToken({ secret: config.jwtSecret, sub: demoEmail(role, slug), tenant: slug, ttl, issuer: config.jwtIssuer, audience: config.jwtAudience });
}

export async function printWelcome(config: Config, port: number, demo: boolean) {
  const url = `http://localhost:${port}/graphql`;
  const note = !demo || !config.graphiql
    ? ""
    : servesDemoToken(config, demo)
      ? "  (its Authorization header holds an acme OWNER token: press play)"
      : `  (HOST=${config.host ?? "every interface"} is reachable from other machines: GraphiQL holds no token; paste one below)`;
  const lines = [``, `  GraphiQL: ${url}${note}`];
  if (demo) {
    lines.push(``, `  Demo tokens (valid 24h; header "Authorization: Bearer <token>"):`);
    for (const t of DEMO_TENANTS) {
      for (const role of DEMO_ROLES) {
        const token = await demoToken(config, t.slug, role, "24h");
        lines.push(`  ${t.slug.padEnd(7)} ${role.padEnd(9)} ${token}`);
      }
    }
    const admin = await signDevToken({ secret: config.jwtSecret, sub: DEMO_PLATFORM_ADMIN.subject, ttl: "24h", issuer: config.jwtIssuer, audience: config.jwtAudience });
    lines.push(`  platform admin    ${admin}`);
    lines.push(``, `  First query: open GraphiQL, press play and pick Dashboard (README, "The first five minutes").`);
  }
  lines.push(``);
  // The banner is for a person at a terminal, not for the JSON log stream.
  process.stdout.write(lines.join("\n") + "\n");
}
