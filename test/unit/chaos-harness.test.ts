import { describe, expect, it } from "vitest";
import { classify, rowsIn, type Answer } from "../../chaos/client.ts";
import { planFaults } from "../../chaos/faults.ts";
import { foldAttempts, retryable, type Sent } from "../../chaos/workload.ts";

/**
 * The chaos run's judge (chaos/client.ts) and fault plan (chaos/faults.ts):
 * what counts as an allowed failure, and that a seed gives the same run.
 */
const answer = (status: number, json: unknown, headers: Record<string, string> = {}, transport: Answer["transport"] = "response"): Answer => ({
  transport,
  status,
  headers,
  json,
  text: JSON.stringify(json) ?? "",
  sentAt: 0,
  doneAt: 1,
  replica: "r",
  generation: 0,
});
const err = (code?: string) => ({ errors: [{ message: "m", ...(code ? { extensions: { code } } : {}) }], data: null });

describe("chaos classify", () => {
  it("accepts a 503 SERVICE_UNAVAILABLE only with Retry-After", () => {
    expect(classify(answer(503, err("SERVICE_UNAVAILABLE"), { "retry-after": "1" })).verdict).toBe("unavailable");
    expect(classify(answer(503, err("SERVICE_UNAVAILABLE"))).verdict).toBe("bad");
    expect(classify(answer(200, err("SERVICE_UNAVAILABLE"), { "retry-after": "1" })).verdict).toBe("bad");
  });

  it("counts 500s, INTERNAL_SERVER_ERROR, uncoded errors, non-JSON bodies and hangs as bad", () => {
    expect(classify(answer(500, err("INTERNAL_SERVER_ERROR"))).verdict).toBe("bad");
    expect(classify(answer(200, err("INTERNAL_SERVER_ERROR"))).verdict).toBe("bad");
    expect(classify(answer(200, err())).verdict).toBe("bad");
    expect(classify({ ...answer(502, undefined), text: "Bad Gateway" }).verdict).toBe("bad");
    expect(classify(answer(0, undefined, {}, "timeout")).verdict).toBe("bad");
  });

  it("sorts coded refusals, successes and transport failures apart", () => {
    expect(classify(answer(403, err("TENANT_ACCESS_DENIED"))).verdict).toBe("refused");
    expect(classify(answer(200, err("FORBIDDEN"))).verdict).toBe("refused");
    expect(classify(answer(429, err("RATE_LIMITED"), { "retry-after": "3" })).verdict).toBe("refused");
    expect(classify(answer(429, err("RATE_LIMITED"))).verdict).toBe("bad");
    expect(classify(answer(200, { data: { a: 1 } })).verdict).toBe("ok");
    expect(classify(answer(0, undefined, {}, "reset")).verdict).toBe("cut");
    expect(classify(answer(0, undefined, {}, "refused")).verdict).toBe("not-sent");
  });
});

describe("chaos mutation attempts (one Idempotency-Key, retried)", () => {
  const sent = (a: Answer, requestId: string, cutByKill = false): Sent => ({ answer: a, c: classify(a), requestId, cutByKill });
  const unavailable = answer(503, err("SERVICE_UNAVAILABLE"), { "retry-after": "2" });
  const ok = answer(200, { data: { createProject: { project: { id: "x" } } } });
  const replayed = answer(200, { data: { createProject: { project: { id: "x" } } } }, { "idempotency-replayed": "true" });

  it("retries a 503, a cut, a refused connection, a timeout and IDEMPOTENCY_KEY_IN_USE; not a success, a refusal or a 500", () => {
    expect(retryable(sent(unavailable, "a"))).toBe(true);
    expect(retryable(sent(answer(0, undefined, {}, "reset"), "a"))).toBe(true);
    expect(retryable(sent(answer(0, undefined, {}, "refused"), "a"))).toBe(true);
    expect(retryable(sent(answer(0, undefined, {}, "timeout"), "a"))).toBe(true);
    expect(retryable(sent(answer(409, err("IDEMPOTENCY_KEY_IN_USE"), { "retry-after": "1" }), "a"))).toBe(true);
    expect(retryable(sent(ok, "a"))).toBe(false);
    expect(retryable(sent(answer(200, err("FORBIDDEN")), "a"))).toBe(false);
    expect(retryable(sent(answer(500, err("INTERNAL_SERVER_ERROR")), "a"))).toBe(false);
  });

  it("acknowledged when any attempt is, and says whether only a replay acknowledged it", () => {
    const f = foldAttempts([sent(unavailable, "a"), sent(replayed, "b")])!;
    expect(f).toMatchObject({ requestId: "b", requestIds: ["a", "b"], ackedOnReplay: true, cutByKill: false });
    expect(f.c.verdict).toBe("ok");
    expect(foldAttempts([sent(ok, "a")])!.ackedOnReplay).toBe(false);
  });

  it("never acknowledged: a cut or bad attempt decides (stored-unacknowledged if stored), else the last refusal or 503 (stored-refused)", () => {
    const cut = foldAttempts([sent(answer(0, undefined, {}, "reset"), "a"), sent(unavailable, "b")])!;
    expect(cut.c.verdict).toBe("cut");
    expect(cut.cutByKill).toBe(false);
    expect(foldAttempts([sent(answer(0, undefined, {}, "reset"), "a", true), sent(unavailable, "b")])!.cutByKill).toBe(true);
    const refused = foldAttempts([sent(unavailable, "a"), sent(unavailable, "b")])!;
    expect(refused).toMatchObject({ requestId: "b", ackedOnReplay: false });
    expect(refused.c.verdict).toBe("unavailable");
    expect(foldAttempts([])).toBeUndefined();
  });
});

describe("chaos rowsIn", () => {
  it("finds every global id and e-mail, however deep", () => {
    const id = (t: string, n: number) => Buffer.from(`${t}:00000000-0000-4000-8000-00000000000${n}`).toString("base64");
    const data = { projects: { edges: [{ node: { id: id("Project", 1), deployments: [{ id: id("Deployment", 2), createdBy: { id: id("User", 3), email: "a@x.test" } }] } }] }, nodes: [null, { id: "not-a-global-id" }] };
    const { rows, emails } = rowsIn(data);
    expect(rows.map((r) => r.type)).toEqual(["Project", "Deployment", "User"]);
    expect(emails).toEqual(["a@x.test"]);
  });
});

describe("chaos fault plan", () => {
  it("is the same for the same seed, another for another, and leaves the last 5 s alone", () => {
    const a = planFaults(7, 600, ["redis-restart", "pg-restart", "replica-restart"], [15, 45], [1, 6]);
    expect(planFaults(7, 600, ["redis-restart", "pg-restart", "replica-restart"], [15, 45], [1, 6])).toEqual(a);
    expect(planFaults(8, 600, ["redis-restart", "pg-restart", "replica-restart"], [15, 45], [1, 6])).not.toEqual(a);
    expect(a.length).toBeGreaterThan(10);
    expect(a.every((f) => f.atS <= 595 && f.downMs >= 1000 && f.downMs <= 6000)).toBe(true);
    const count = (k: string) => a.filter((f) => f.kind === k).length;
    // Shuffled rounds: every kind as often as the others, give or take one.
    for (const k of ["redis-restart", "pg-restart", "replica-restart"]) expect(Math.abs(count(k) - a.length / 3)).toBeLessThanOrEqual(1);
  });
});
