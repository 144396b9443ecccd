import { describe, expect, it } from "vitest";
import { StoreUnavailableError, type Store } from "../../src/infra/store.ts";
import { MemoryStore } from "../../src/infra/memory-store.ts";
import { Directory, STORE_BACKOFF_MS } from "../../src/tenancy/directory.ts";
import { ManualClock } from "../helpers/manual-clock.ts";

/** A platform client that answers the directory's reads of one user (and counts them). */
function platform() {
  const reads = { n: 0 };
  const client = {
    $queryRaw: async () => [{ id: "db-1" }],
    user: {
      findUnique: async () => {
        reads.n++;
        return { id: "u-1", email: "a@b.test", name: null, authSubject: "sub-1", isPlatformAdmin: false };
      },
    },
  };
  return { client: client as never, reads };
}

describe("the directory's store back-off", () => {
  it("skips a failing store for STORE_BACKOFF_MS on the clock it was given, then uses it again", async () => {
    const clock = new ManualClock();
    const memory = new MemoryStore();
    let failing = true;
    const gets = { n: 0 };
    const store: Store = Object.assign(Object.create(memory) as Store, {
      get: async (key: string) => {
        gets.n++;
        if (failing) throw new StoreUnavailableError("down");
        return memory.get(key);
      },
    });
    const { client } = platform();
    const directory = new Directory(client, store, { now: clock.now });
    expect((await directory.userBySubject("sub-1"))?.id).toBe("u-1");
    expect(directory.storeAvailable).toBe(false);
    failing = false;
    // Within the back-off the store is not asked.
    clock.advance(STORE_BACKOFF_MS - 1);
    await directory.userBySubject("sub-1");
    expect(gets.n).toBe(1);
    expect(directory.storeAvailable).toBe(false);
    // Once the clock has passed it, the store is asked again.
    clock.advance(1);
    expect(directory.storeAvailable).toBe(true);
    await directory.userBySubject("sub-1");
    expect(gets.n).toBe(2);
  });
});
