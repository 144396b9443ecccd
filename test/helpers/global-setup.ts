import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../src/db/embedded.ts";
import { createTemplateDatabase, ensurePgBouncerLogins } from "./db.ts";
import { dropListed, openDropList, sweepDeadRuns } from "./drop-list.ts";
import { clusterAnswers, startRedisCluster, testRedisTarget, type OwnRedisCluster } from "./redis-cluster.ts";

/**
 * Once per `vitest run`: find the PostgreSQL server (DATABASE_URL, or an
 * embedded one in .data-test on port 54339), migrate a template database, and
 * hand both to the test workers through `provide` (see test/helpers/db.ts).
 */
interface SharedDatabase {
  serverUrl: string;
  template: string;
  /** The run's retired test databases, dropped at the end (test/helpers/drop-list.ts). */
  dropList: string;
  embedded?: EmbeddedDatabase;
}

/**
 * Every vitest project (vitest.config.ts) runs this setup, in the one main
 * process: the first starts the database and makes the template, the others
 * share it, the last to finish drops it.
 */
const shared = globalThis as {
  __tenantgraphTestDb?: Promise<SharedDatabase>;
  __tenantgraphTestDbUsers?: number;
  __tenantgraphTestCluster?: Promise<OwnRedisCluster | undefined>;
};

async function startDatabase(): Promise<SharedDatabase> {
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
  try {
    await sweepDeadRuns(serverUrl);
    const template = await createTemplateDatabase(serverUrl);
    await ensurePgBouncerLogins(serverUrl);
    return { serverUrl, template, dropList: openDropList(template), embedded };
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
}

/**
 * REDIS_CLUSTER_NODES (`npm run test:cluster`) naming a local cluster that
 * is not up (CI's `.ci/run` starts one): started here on those ports, stopped at the end.
 */
async function startRedisClusterIfDown(): Promise<OwnRedisCluster | undefined> {
  const target = testRedisTarget();
  if (typeof target !== "object" || (await clusterAnswers(target))) return undefined;
  if (!target.every((n) => ["127.0.0.1", "localhost"].includes(n.host))) return undefined;
  return startRedisCluster({ ports: target.map((n) => n.port) });
}

export default async function setup(project: TestProject) {
  shared.__tenantgraphTestCluster ??= startRedisClusterIfDown();
  shared.__tenantgraphTestDb ??= startDatabase();
  shared.__tenantgraphTestDbUsers = (shared.__tenantgraphTestDbUsers ?? 0) + 1;
  const { serverUrl, template, dropList, embedded } = await shared.__tenantgraphTestDb;
  project.provide("testDbServerUrl", serverUrl);
  project.provide("testDbTemplate", template);
  project.provide("testDbDropList", dropList);

  return async () => {
    shared.__tenantgraphTestDbUsers = (shared.__tenantgraphTestDbUsers ?? 1) - 1;
    if (shared.__tenantgraphTestDbUsers > 0) return;
    shared.__tenantgraphTestDb = undefined;
    await (await shared.__tenantgraphTestCluster)?.close();
    shared.__tenantgraphTestCluster = undefined;
    // Every test database the run retired, then the template.
    await dropListed(serverUrl, dropList, template);
    await embedded?.stop();
  };
}
