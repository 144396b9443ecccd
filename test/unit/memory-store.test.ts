import { describe, expect, it } from "vitest";
import { MemoryStore } from "../../src/infra/memory-store.ts";
import type { Admission } from "../../src/infra/store.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/** The in-process store's TTLs and counter windows run on the clock it is given (the app's), never on the wall clock. */
describe("MemoryStore on an injected clock", () => {
  it("an entry lives its TTL to the millisecond of the clock", async () => {
    const clock = new ManualClock(Date.UTC(2030, 0, 1));
    const store = new MemoryStore({ now: clock.now });
    await store.set("k", "v", 10);
    clock.advance(9_999);
    expect(await store.get("k")).toBe("v");
    clock.advance(1);
    expect(await store.get("k")).toBeNull();
  });

  it("a counter's window resets when the clock reaches its end", async () => {
    const clock = new ManualClock(Date.UTC(2030, 0, 1));
    const store = new MemoryStore({ now: clock.now });
    expect(await store.hit("c", 60_000)).toEqual({ count: 1 });
    clock.advance(59_999);
    expect((await store.hit("c", 60_000, 2)).count).toBe(3);
    clock.advance(1);
    expect(await store.hit("c", 60_000)).toEqual({ count: 1 });
  });

  it("a counted read hits its window only when every entry meets its admission, on the clock's window", async () => {
    const clock = new ManualClock(Date.UTC(2030, 0, 1));
    const store = new MemoryStore({ now: clock.now });
    const admit: Admission[] = [{ "@db": "d1", status: "ACTIVE" }, { "@db": "d1", role: true }];
    const counter = { key: "t:{a}:rl:1", windowMs: 60_000 };
    expect(await store.readAndHit(["t:{a}:info", "t:{a}:m:u"], admit, counter)).toEqual({ values: [null, null], count: null });
    await store.set("t:{a}:info", JSON.stringify({ "@db": "d1", status: "ACTIVE" }), 60);
    await store.set("t:{a}:m:u", JSON.stringify({ "@db": "d1", "@v": null }), 60);
    expect((await store.readAndHit(["t:{a}:info", "t:{a}:m:u"], admit, counter)).count).toBeNull();
    await store.set("t:{a}:m:u", JSON.stringify({ "@db": "d2", role: "VIEWER" }), 60);
    expect((await store.readAndHit(["t:{a}:info", "t:{a}:m:u"], admit, counter)).count).toBeNull();
    await store.set("t:{a}:m:u", JSON.stringify({ "@db": "d1", role: "VIEWER" }), 60);
    expect((await store.readAndHit(["t:{a}:info", "t:{a}:m:u"], admit, counter)).count).toBe(1);
    await store.set("t:{a}:info", JSON.stringify({ "@db": "d1", status: "SUSPENDED" }), 60);
    expect((await store.readAndHit(["t:{a}:info", "t:{a}:m:u"], admit, counter)).count).toBeNull();
    expect(await store.hit(counter.key, 60_000)).toEqual({ count: 2 });
    clock.advance(60_000);
    expect(await store.hit(counter.key, 60_000)).toEqual({ count: 1 });
  });
});
