import { defineConfig } from "prisma/config";

// Prisma's schema engine cannot be downloaded on our machines, and we do not
// need it: migrations are plain SQL applied by src/db/migrate.ts. `prisma
// generate` only checks that the variable points at an existing file.
process.env.PRISMA_SCHEMA_ENGINE_BINARY ??= "/dev/null";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "" },
});
