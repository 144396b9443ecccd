import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { dropDatabase } from "./db.ts";

/**
 * The run's retired test databases (test/helpers/db.ts, retireDatabase): one
 * file per `vitest run`, named by the run's process id and its template, one
 * database name a line (workers append). The global teardown drops every
 * database listed, then the template; the next run's setup does the same
 * for a run whose process is gone (interrupted before its teardown).
 */
const DIR = path.join(tmpdir(), "tenantgraph-test-drops");
const fileName = (pid: number, template: string) => `${pid}-${template}`;

/** A new, empty list for this run; its path goes to the workers (`provide("testDbDropList")`). */
export function openDropList(template: string): string {
  mkdirSync(DIR, { recursive: true });
  const file = path.join(DIR, fileName(process.pid, template));
  writeFileSync(file, "");
  return file;
}

/** At most `limit` at once: concurrent drops share the checkpoint each waits for. */
async function dropAll(serverUrl: string, names: string[], limit = 6): Promise<void> {
  const queue = [...new Set(names)];
  const failures: string[] = [];
  const worker = async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      await dropDatabase(serverUrl, name).catch((err: unknown) => failures.push(`${name}: ${String(err)}`));
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  if (failures.length) console.error(`could not drop ${failures.length} test database(s):\n${failures.join("\n")}`);
}

/** Drops every database of the list, then the template, and removes the list. */
export async function dropListed(serverUrl: string, file: string, template: string): Promise<void> {
  const names = readFileSync(file, "utf8").split("\n").filter((n) => /^tg_test_[0-9a-f]+$/.test(n));
  await dropAll(serverUrl, names);
  await dropDatabase(serverUrl, template).catch((err: unknown) => console.error(`could not drop template database ${template}:`, err));
  rmSync(file, { force: true });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** The lists of runs whose process is gone: their databases dropped (IF EXISTS: a list of another server's run drops nothing here). */
export async function sweepDeadRuns(serverUrl: string): Promise<void> {
  let files: string[];
  try {
    files = readdirSync(DIR);
  } catch {
    return;
  }
  for (const f of files) {
    const m = /^(\d+)-(tg_template_[0-9a-f]+)$/.exec(f);
    if (!m || alive(Number(m[1]))) continue;
    await dropListed(serverUrl, path.join(DIR, f), m[2]!).catch(() => {});
  }
}
