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

export function demoToken(config: Config, slug: string, role: Role, ttl: string) {
  return signDevToken({ secret: config.jwtSecret, sub: demoEmail(role, slug), tenant: slug, ttl, issuer: config.jwtIssuer, audience: config.jwtAudience });
}

export async function printWelcome(config: Config, port: number, demo: boolean) {
  const url = `http://localhost:${port}/graphql`;
  const lines = [``, `  GraphiQL: ${url}${demo && config.graphiql ? "  (its Authorization header holds an acme OWNER token: press play)" : ""}`];
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
