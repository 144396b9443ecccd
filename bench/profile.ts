import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { formatSummary, summarizeProfile } from "./cpuprofile-summary.ts";
import { runLoad } from "./load.ts";
import { benchOptionsOrExit, runMain } from "./options.ts";
import { cpuMs, ROOT, serverEnv, startChild, waitReady } from "./processes.ts";
import { cachedDashboardGen, dashboardGen, mutationMixGen, signTokens, withoutTenant } from "./scenarios.ts";
import { startLiveLoad } from "./live.ts";
import { clearStaleDirectoryCache, loadFixture, seedBenchDatabase } from "./seed.ts";

/**
 * Where the server's CPU goes under the dashboard load:
 *
 *   DATABASE_URL=... REDIS_URL=... npx tsx bench/profile.ts
 *
 * Reuses the bench database when `npm run bench` left one (else seeds it),
 * starts the server with `node --cpu-prof`, warms it up, loads it with the
 * dashboard at BENCH_CONNECTIONS for BENCH_DURATION seconds, stops it (the
 * profile is written at exit) and summarises only the measured window:
 * self time by package and function, inclusive time by function. The
 * .cpuprofile opens in Chrome DevTools or speedscope for a flame graph.
 *
 * BENCH_PROFILE=hit profiles the response cache's HIT path: the dashboard
 * allowed to use the cache (the warm-up fills it; nothing invalidates it).
 *
 * BENCH_PROFILE=mutation profiles createDeployment alone (the mutation-mix's
 * mutations by DEVELOPER tokens, every request one; CPU per request is then
 * the CPU of one createDeployment).
 *
 * BENCH_PROFILE=live profiles the live-updates load alone instead (the
 * bench's live scenario without the dashboard: BENCH_LIVE_STREAMS streams,
 * BENCH_LIVE_MUTATIONS createDeployment/s) and reports CPU per delivery.
 */

const log = (line: string) => process.stdout.write(`[profile] ${line}\n`);

async function main() {
  const opts = benchOptionsOrExit();
  let fixture = await loadFixture(opts);
  if (!fixture) fixture = await seedBenchDatabase(opts, log);
  else log(`reusing database ${opts.database}`);
  await clearStaleDirectoryCache(opts.redisUrl);
  const tokens = await signTokens(fixture, opts.jwtSecret);
  const others = new Set(fixture.tenants.filter((t) => t !== fixture.noisy).map((t) => t.slug));
  const hits = process.env.BENCH_PROFILE === "hit";
  const mutations = process.env.BENCH_PROFILE === "mutation";
  // The mix's tenth request of every ten is its createDeployment.
  const mix = mutationMixGen(withoutTenant(tokens, fixture.noisy.slug));
  const gen = hits ? cachedDashboardGen(withoutTenant(tokens, fixture.noisy.slug)) : mutations ? (i: number) => mix(i * 10 + 9) : dashboardGen(tokens, others);
  const what = hits ? "cached dashboard (HIT path)" : mutations ? "createDeployment" : "dashboard";

  const dir = path.join(ROOT, "bench", "results", "profiles");
  await mkdir(dir, { recursive: true });
  const server = startChild("server", "src/server.ts", opts.port + 4, serverEnv(opts, fixture.url), ["--cpu-prof", `--cpu-prof-dir=${dir}`]);
  // The profile's time 0 is the process's start: after startChild, which first builds dist/ (npm run build, seconds).
  const spawnedAt = Date.now();
  try {
    await waitReady(server);
    const url = `http://127.0.0.1:${server.port}`;
    const warmupS = Math.max(5, opts.warmupS);
    log(`warming up ${warmupS} s`);
    await runLoad({ url, connections: opts.connections, durationS: warmupS, gen });
    if (process.env.BENCH_PROFILE === "live") {
      const live = await startLiveLoad(url, withoutTenant(tokens, fixture.noisy.slug), { streams: opts.liveStreams ?? 1000, mutationsPerS: opts.liveMutationsPerS ?? 10 });
      await new Promise((r) => setTimeout(r, warmupS * 1000));
      const skip = Date.now() - spawnedAt;
      const c0 = cpuMs(server.proc.pid!) ?? NaN;
      live.measure();
      await new Promise((r) => setTimeout(r, opts.durationS * 1000));
      const cpu = (cpuMs(server.proc.pid!) ?? NaN) - c0;
      const until = Date.now() - spawnedAt;
      const f = await live.stop();
      await server.stop();
      const pid = server.proc.pid!;
      const file = (await readdir(dir)).filter((x) => x.includes(`.${pid}.0.`) && x.endsWith(".cpuprofile")).sort().pop();
      if (!file) throw new Error(`no .cpuprofile of pid ${pid} in ${dir}`);
      const summary = summarizeProfile(JSON.parse(await readFile(path.join(dir, file), "utf8")), 30, skip, until);
      const text = [
        `live load alone for ${opts.durationS} s: ${f.streams} streams over ${f.tenants} tenants, ${f.mutations} mutations, ${f.delivered} deliveries (${f.expected} expected); commit->delivery p50 ${f.p50.toFixed(1)} ms, p95 ${f.p95.toFixed(1)} ms; server CPU ${cpu.toFixed(0)} ms = ${(cpu / opts.durationS / 10).toFixed(1)}% of a core`,
        `profile: bench/results/profiles/${file} (${(skip / 1000).toFixed(1)} s to ${(until / 1000).toFixed(1)} s: start-up, streams opening, warm-up and the streams' end left out)`,
        ``,
        formatSummary(summary),
      ].join("\n");
      await writeFile(path.join(dir, file.replace(/\.cpuprofile$/, ".txt")), text + "\n");
      process.stdout.write(`\n${text}\n`);
      return;
    }
    const skipMs = Date.now() - spawnedAt;
    const cpu0 = cpuMs(server.proc.pid!) ?? NaN;
    const result = await runLoad({ url, connections: opts.connections, durationS: opts.durationS, gen });
    const cpuPerRequest = ((cpuMs(server.proc.pid!) ?? NaN) - cpu0) / result.requests;
    log(
      `${what} at ${opts.connections} connections: ${result.rps.toFixed(1)} req/s, p50 ${result.p50.toFixed(1)} ms, p95 ${result.p95.toFixed(1)} ms, ${cpuPerRequest.toFixed(2)} ms CPU per request`,
    );
    await server.stop();
    const pid = server.proc.pid!;
    const file = (await readdir(dir)).filter((f) => f.includes(`.${pid}.0.`) && f.endsWith(".cpuprofile")).sort().pop();
    if (!file) throw new Error(`no .cpuprofile of pid ${pid} in ${dir}`);
    const summary = summarizeProfile(JSON.parse(await readFile(path.join(dir, file), "utf8")), 30, skipMs);
    const text = [
      `${what} at ${opts.connections} connections for ${opts.durationS} s: ${result.rps.toFixed(1)} req/s, p95 ${result.p95.toFixed(1)} ms, ${cpuPerRequest.toFixed(2)} ms server CPU per request`,
      `profile: bench/results/profiles/${file} (first ${(skipMs / 1000).toFixed(1)} s skipped: start-up and warm-up)`,
      ``,
      formatSummary(summary),
    ].join("\n");
    await writeFile(path.join(dir, file.replace(/\.cpuprofile$/, ".txt")), text + "\n");
    process.stdout.write(`\n${text}\n`);
  } finally {
    await server.stop();
  }
}

runMain(main);
