import { describe, expect, it } from "vitest";
import { ClientGone, TimeShare, TimeShareTimeout } from "../../src/db/time-share.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/**
 * The time share of a tier pool (src/db/time-share.ts) on a manual clock:
 * what is admitted, what waits and when it is let through, by the clock
 * alone (no real time passes into it).
 */
function share(clock: ManualClock, over: Partial<{ share: number; windowMs: number; max: number; maxWaitMs: number }> = {}) {
  return new TimeShare({ share: 0.5, windowMs: 1000, max: 2, maxWaitMs: 5000, clock, ...over });
}

/** Whether `p` has settled by now (its callbacks run in microtasks). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
}

describe("time share", () => {
  it("admits at once while the balance lasts; a connection held past it puts the next acquisition in debt until the clock pays it back", async () => {
    const clock = new ManualClock(0);
    const s = share(clock);
    expect(s.balanceMs).toBe(500);
    const release = await s.acquire();
    clock.advance(1200); // 500 + (0.5 - 1) x 1200 = -100
    release();
    expect(s.balanceMs).toBeCloseTo(-100);
    const next = s.acquire();
    expect(await settled(next)).toBe(false);
    expect(s.shareWaiting).toBe(1);
    clock.advance(199); // -100 + 0.5 x 199 = -0.5
    expect(await settled(next)).toBe(false);
    clock.advance(1);
    expect(await settled(next)).toBe(true);
    (await next)();
    expect(s.stats).toMatchObject({ shareWaits: 1, shareWaitMs: 200, timeouts: 0 });
  });

  it("while the pool holds more than its share the debt grows: no wake-up, a release lets the waiter through once repaid", async () => {
    const clock = new ManualClock(0);
    const s = share(clock, { max: 3 });
    const a = await s.acquire();
    clock.advance(2000); // 500 - 0.5 x 2000 = -500
    const waiting = s.acquire();
    expect(clock.pending).toBe(1); // its deadline only
    clock.advance(1000); // -1000
    expect(await settled(waiting)).toBe(false);
    a();
    clock.advance(1999);
    expect(await settled(waiting)).toBe(false);
    clock.advance(1);
    expect(await settled(waiting)).toBe(true);
  });

  it("a wait for the share longer than maxWaitMs fails with QUERY_TIMEOUT (SQLSTATE 57014); a wait for a connection alone with pg's timeout error", async () => {
    const clock = new ManualClock(0);
    const s = share(clock, { max: 1 });
    const held = await s.acquire();
    const forConnection = s.acquire();
    clock.advance(400); // 500 - 0.5 x 400 = 300: still in credit
    expect(s.shareWaiting).toBe(0);
    clock.advance(600); // 0
    clock.advance(4000); // -2000, past the deadline at 5000
    const err = await forConnection.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeShareTimeout);
    expect((err as TimeShareTimeout).code).toBe("57014");
    expect((err as TimeShareTimeout).extensions.code).toBe("QUERY_TIMEOUT");
    held();

    const clock2 = new ManualClock(0);
    const t = share(clock2, { max: 1, share: 0.9 });
    await t.acquire(); // held throughout, in credit: 900 - 0.1 x 5000 = 400 at the deadline
    const w = t.acquire();
    clock2.advance(5000);
    const e2 = await w.catch((e: unknown) => e);
    expect(e2).not.toBeInstanceOf(TimeShareTimeout);
    expect((e2 as Error).message).toBe("timeout exceeded when trying to connect");
  });

  it("waiters go first come first served, never more than max at once, and a newcomer does not pass them", async () => {
    const clock = new ManualClock(0);
    const s = share(clock, { max: 1, share: 0.5 });
    const first = await s.acquire();
    const order: string[] = [];
    const b = s.acquire().then((r) => (order.push("b"), r));
    const c = s.acquire().then((r) => (order.push("c"), r));
    first();
    (await b)();
    (await c)();
    expect(order).toEqual(["b", "c"]);
  });

  it("in debt, the waiters are still served round-robin by tenant", async () => {
    const clock = new ManualClock(0);
    const s = share(clock, { share: 1.5, max: 3 });
    const held = await s.acquire("a");
    const second = await s.acquire("a");
    clock.advance(3200); // 1500 - 0.5 x 3200 = -100
    const order: string[] = [];
    const waits = ["a", "a", "b"].map((t) => s.acquire(t).then((r) => (order.push(t), r)));
    second(); // a still holds one; repaid at 0.5 per ms
    expect(s.shareWaiting).toBe(3);
    clock.advance(199);
    expect(await settled(waits[2]!)).toBe(false);
    clock.advance(1); // debt paid, room for two: a's first, then b's (first come first served: a's two)
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(["a", "b"]);
    held();
    for (const w of [waits[0]!, waits[2]!]) (await w)();
  });

  it("a tenant at its cap waits while the pool has room, never for another tenant; its wait ends with pg's timeout error", async () => {
    const clock = new ManualClock(0);
    const gate = new TimeShare({ windowMs: 1000, max: 3, tenantMax: 1, maxWaitMs: 10_000, clock });
    expect(gate.bounded).toBe(false);
    const a = await gate.acquire("a");
    const a2 = gate.acquire("a");
    expect(gate.tryAcquire("a")).toBeUndefined();
    const b = gate.tryAcquire("b");
    expect(b).toBeTypeOf("function");
    expect(await settled(a2)).toBe(false);
    clock.advance(10_000);
    expect(((await a2.catch((e: unknown) => e)) as Error).message).toBe("timeout exceeded when trying to connect");
    a();
    b!();
    expect(gate.waiting).toBe(0);
  });

  it("close fails the waiters", async () => {
    const clock = new ManualClock(0);
    const s = share(clock, { max: 1 });
    await s.acquire();
    const w = s.acquire();
    s.close(new Error("ended"));
    await expect(w).rejects.toThrow("ended");
    expect(clock.pending).toBe(0);
  });
});

describe("time share: a waiter whose client went away", () => {
  const pool = (clock: ManualClock) => new TimeShare({ windowMs: 1000, max: 1, maxWaitMs: 5000, clock });

  it("leaves the queue at once, never admitted; the connection it would have taken goes to the next waiter", async () => {
    const clock = new ManualClock(0);
    const s = pool(clock);
    const held = await s.acquire("a");
    const client = new AbortController();
    const gone = s.acquire("b", client.signal);
    const next = s.acquire("c");
    expect(s.waiting).toBe(2);
    client.abort();
    expect(s.waiting).toBe(1);
    await expect(gone).rejects.toBeInstanceOf(ClientGone);
    await expect(gone).rejects.toMatchObject({ extensions: { code: "CLIENT_CLOSED_REQUEST" } });
    // Its deadline went with it: only the next waiter's is left.
    expect(clock.pending).toBe(1);
    held();
    expect(await settled(next)).toBe(true);
    expect(s.stats.gone).toBe(1);
    // Aborting again, after it left, changes nothing.
    client.abort();
    expect(s.waiting).toBe(0);
  });

  it("already gone when it asks: refused at once, even with a connection free, and nothing is held", async () => {
    const clock = new ManualClock(0);
    const s = pool(clock);
    const client = new AbortController();
    client.abort();
    await expect(s.acquire("a", client.signal)).rejects.toBeInstanceOf(ClientGone);
    expect(s.waiting).toBe(0);
    // The one connection is still free.
    expect(s.tryAcquire("b")).toBeTypeOf("function");
  });

  it("admitted before its client went: it keeps its connection (the request runs on), and its signal is no longer listened to", async () => {
    const clock = new ManualClock(0);
    const s = pool(clock);
    const held = await s.acquire("a");
    const client = new AbortController();
    const waiting = s.acquire("b", client.signal);
    held();
    const release = await waiting;
    client.abort();
    expect(s.stats.gone).toBe(0);
    expect(s.tryAcquire("c")).toBeUndefined();
    release();
    expect(s.tryAcquire("c")).toBeTypeOf("function");
  });
});
