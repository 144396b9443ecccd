import type { Store } from "./store.ts";
import { admits, type Admission } from "./store-scripts.ts";

/** The in-process store; its TTLs and windows run on `now` (the app's clock; tests inject one). */
export class MemoryStore implements Store {
  readonly kind = "memory" as const;
  private readonly data = new Map<string, { value: string; expiresAt: number }>();
  private readonly now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    this.now = opts.now ?? Date.now;
  }

  private live(key: string) {
    const entry = this.data.get(key);
    if (entry && entry.expiresAt <= this.now()) {
      this.data.delete(key);
      return undefined;
    }
    return entry;
  }
  async get(key: string) {
    return this.live(key)?.value ?? null;
  }
  async set(key: string, value: string, ttlSeconds: number) {
    this.data.set(key, { value, expiresAt: this.now() + ttlSeconds * 1000 });
  }
  async del(...keys: string[]) {
    for (const k of keys) this.data.delete(k);
  }
  async hit(key: string, windowMs: number, by = 1) {
    const entry = this.live(key) ?? { value: "0", expiresAt: this.now() + windowMs };
    entry.value = String(Number(entry.value) + by);
    this.data.set(key, entry);
    return { count: Number(entry.value) };
  }
  async readAndHit(keys: string[], admit: Admission[], counter: { key: string; windowMs: number }) {
    const values = keys.map((k) => this.live(k)?.value ?? null);
    const admitted = values.every((v, i) => admits(v, admit[i] ?? {}));
    return { values, count: admitted ? (await this.hit(counter.key, counter.windowMs)).count : null };
  }
  async deletePattern(pattern: string) {
    const re = new RegExp(
      "^" + pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$",
    );
    let n = 0;
    for (const key of [...this.data.keys()]) if (re.test(key) && this.data.delete(key)) n++;
    return n;
  }
  async ping() {
    return true;
  }
  async close() {
    this.data.clear();
  }
}
