import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../src/db/embedded.ts";
import { createTemplateDatabase, dropDatabase } from "./db.ts";

/**
 * Once per `vitest run`: find the PostgreSQL server (DATABASE_URL, or an
 * embedded one in .data-test on port 54339), migrate a template database, and
 * hand both to the test workers through `provide` (see test/helpers/db.ts).
 */
export default async function setup(project: TestProject) {
  let embedded: EmbeddedDatabase | undefined;
  let serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    embedded = await startEmbeddedPostgres({
      dataDir: process.env.TEST_PG_DATA_DIR ?? ".data-test",
      port: Number(process.env.TEST_PG_PORT ?? 54339),
      database: "postgres",
    });
    serverUrl = embedded.url;
  }
  let template: string;
  try {
    template = await createTemplateDatabase(serverUrl);
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
  project.provide("testDbServerUrl", serverUrl);
  project.provide("testDbTemplate", template);

  return async () => {
    await dropDatabase(serverUrl, template).catch((err: unknown) => {
      console.error(`could not drop template database ${template}:`, err);
    });
    await embedded?.stop();
  };
}
