import { describe, expect, it } from "vitest";
import { Sweep } from "../../src/http/sweep.ts";

/** src/http/sweep.ts: slices of a period, each item visited once a period, the timer running only while an item is in. */
describe("Sweep", () => {
  function manual() {
    const clock = { turn: () => {}, starts: 0, stops: 0, everyMs: 0 };
    const schedule = (fn: () => void, everyMs: number) => {
      clock.turn = fn;
      clock.starts++;
      clock.everyMs = everyMs;
      return () => {
        clock.stops++;
        clock.turn = () => {};
      };
    };
    return { clock, schedule };
  }

  it("spreads items over the slices and visits one slice a turn", () => {
    const { clock, schedule } = manual();
    const visits: string[] = [];
    const sweep = new Sweep<string>(1_000, (item) => visits.push(item), { slices: 4, schedule });
    for (const item of ["a", "b", "c", "d", "e"]) sweep.add(item);
    expect([clock.everyMs, sweep.size]).toEqual([250, 5]);
    const turns = [0, 1, 2, 3].map(() => {
      visits.length = 0;
      clock.turn();
      return [...visits];
    });
    expect(turns).toEqual([["a", "e"], ["b"], ["c"], ["d"]]);
  });

  it("runs its timer only while an item is in; a removal is idempotent", () => {
    const { clock, schedule } = manual();
    const visits: number[] = [];
    const sweep = new Sweep<number>(100, (item) => visits.push(item), { slices: 1, schedule });
    expect(clock.starts).toBe(0);
    const removeOne = sweep.add(1);
    const removeTwo = sweep.add(2);
    expect([clock.starts, clock.stops]).toEqual([1, 0]);
    removeOne();
    removeOne();
    expect([sweep.size, clock.stops]).toEqual([1, 0]);
    clock.turn();
    expect(visits).toEqual([2]);
    removeTwo();
    expect([sweep.size, clock.stops]).toEqual([0, 1]);
    sweep.add(3);
    expect([clock.starts, sweep.size]).toEqual([2, 1]);
    clock.turn();
    expect(visits).toEqual([2, 3]);
    sweep.close();
    expect(clock.stops).toBe(2);
  });
});
