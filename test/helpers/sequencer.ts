import { relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";
import measured from "./durations.json" with { type: "json" };

/** Files of 3 s or more in a quiet run, for a fresh clone (CI) that has no cached durations. */
const MEASURED: Record<string, number> = measured;

/** Fisher-Yates driven by a small seeded generator (mulberry32): the same seed, the same order. */
function shuffle<T>(items: T[], seed: number): T[] {
  let s = seed >>> 0;
  const random = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Test files in a random order (the run's seed, printed at the start;
 * `--sequence.seed=N` replays it), so no file may rely on another having run
 * before it in its worker. One bias, for the wall time: the longest quarter
 * of each project's files (by the durations vitest cached from earlier runs,
 * or on a fresh clone those of test/helpers/durations.json) starts first, in
 * random order among themselves.
 * Vitest's own random sequencer starts the 25 s file last as often as first,
 * and the whole run then waits for it alone.
 */
export default class ShuffledLongFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const shuffled = shuffle(files, Number(this.ctx.config.sequence.seed ?? Date.now()));
    const duration = (f: TestSpecification) => {
      const file = relative(this.ctx.config.root, f.moduleId);
      return this.ctx.cache.getFileTestResults(`${f.project.name}:${file}`)?.duration ?? MEASURED[file] ?? 0;
    };
    const long = new Set<TestSpecification>();
    for (const name of new Set(files.map((f) => f.project.name))) {
      const mine = files.filter((f) => f.project.name === name && duration(f) > 0).sort((a, b) => duration(b) - duration(a));
      for (const f of mine.slice(0, Math.ceil(mine.length / 4))) long.add(f);
    }
    return [...shuffled.filter((f) => long.has(f)), ...shuffled.filter((f) => !long.has(f))];
  }
}
