import { describe, expect, it } from "vitest";
import { LaneQueue } from "../../src/db/lane-queue.ts";

/**
 * The tier pools' queue (src/db/lane-queue.ts): `remove` takes a waiter out
 * wherever it is (its client went away, its deadline passed) and the others
 * keep their places and their lanes' turns.
 */
const order = (q: LaneQueue<string>) => {
  const out: string[] = [];
  for (let next = q.shift(); next; next = q.shift()) out.push(next.item);
  return out;
};

describe("lane queue", () => {
  it("a waiter removed from the middle of its lane: the others keep their places and turns", () => {
    const q = new LaneQueue<string>();
    for (const [lane, item] of [["a", "a1"], ["a", "a2"], ["b", "b1"], ["a", "a3"], ["b", "b2"]] as const) q.push(lane, item, false);
    expect(q.remove("a", "a2")).toBe(true);
    expect(q.length).toBe(4);
    expect(order(q)).toEqual(["a1", "b1", "a3", "b2"]);
    expect(q.length).toBe(0);
  });

  it("the last waiter of a lane removed: the lane gives up its turn, the next lane's waiter is first", () => {
    const q = new LaneQueue<string>();
    q.push("a", "a1", false);
    q.push("b", "b1", false);
    expect(q.remove("a", "a1")).toBe(true);
    expect(q.shift()).toEqual({ lane: "b", item: "b1" });
    expect(q.ready).toBe(false);
    // Back later, the lane joins at the back like a new one.
    q.push("c", "c1", false);
    q.push("a", "a2", false);
    expect(order(q)).toEqual(["c1", "a2"]);
  });

  it("removing a waiter that is not there (already served or removed) changes nothing", () => {
    const q = new LaneQueue<string>();
    q.push("a", "a1", false);
    expect(q.remove("a", "a2")).toBe(false);
    expect(q.remove("b", "a1")).toBe(false);
    expect(q.shift()?.item).toBe("a1");
    expect(q.remove("a", "a1")).toBe(false);
    expect(q.length).toBe(0);
  });

  it("a parked lane's only waiter removed: nothing is left to resume", () => {
    const q = new LaneQueue<string>();
    q.push("a", "a1", true);
    q.push("b", "b1", false);
    expect(q.remove("a", "a1")).toBe(true);
    q.resume("a");
    expect(order(q)).toEqual(["b1"]);
    expect(q.length).toBe(0);
  });
});
