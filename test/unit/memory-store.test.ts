import { describe, expect, it } from "vitest";
import { MemoryStore } from "../../src/infra/memory-store.ts";
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
});
