import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { GraphQLError, print, type DocumentNode, type ExecutionResult } from "graphql";
import { Prisma } from "../generated/prisma/client.ts";
import { badIdempotencyKey, IDEMPOTENCY_HEADER, idempotencyKeyInUse, idempotencyKeyReused } from "../errors.ts";
import type { Context } from "../tenancy/context.ts";

/**
 * Idempotency keys (docs/idempotency.md; the IETF httpapi draft
 * "The Idempotency-Key HTTP Header Field", as Stripe uses it).
 *
 * A mutation sent with `Idempotency-Key: <key>` claims the key in its own
 * transaction, before it runs: a row (tenant, caller, key, hash of the
 * request) inserted under a transaction-level advisory lock. Once the answer
 * is resolved, the answer is stored in that row (encrypted), and the COMMIT
 * writes the change, its audit entry and the stored answer together. So:
 * - a retry of the same request finds the row and gets the stored answer
 *   (`Idempotency-Replayed: true`) without running again, including when
 *   the first answer was lost after the COMMIT;
 * - the same key with another request: IDEMPOTENCY_KEY_REUSED (422);
 * - the same key while the first request still runs: IDEMPOTENCY_KEY_IN_USE
 *   (409, Retry-After), never a second run;
 * - an answer that says "try again" (SERVICE_UNAVAILABLE, a timeout, an
 *   unexpected error) is not kept: the row is deleted in the same
 *   transaction, so a retry runs for real.
 * Rows expire after IDEMPOTENCY_TTL_HOURS; each stored answer deletes up to
 * 100 expired rows of its tenant, and an expired key is claimed afresh.
 */

export const IDEMPOTENCY_TTL_HOURS = 24;

/** Draft: an sf-string; Stripe: a bare token up to 255 characters. Both are accepted. */
const KEY_RE = /^[\x21-\x7e]{1,255}$/;

/** The key of a request, or null without the header. Throws BAD_REQUEST for a malformed one. */
export function idempotencyKeyOf(request: Request): string | null {
  const raw = request.headers.get(IDEMPOTENCY_HEADER);
  if (raw === null) return null;
  let key = raw.trim();
  if (key.length >= 2 && key.startsWith('"') && key.endsWith('"')) key = key.slice(1, -1);
  if (!KEY_RE.test(key)) throw badIdempotencyKey(`${IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters`);
  return key;
}

/** JSON with sorted object keys: the same variables hash alike whatever their order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** What identifies "the same request": the operation (document, name) and its variables. */
export function requestHash(document: DocumentNode, operationName: string | null | undefined, variables: unknown): string {
  return createHash("sha256")
    .update(canonical([print(document), operationName ?? null, variables ?? {}]))
    .digest("hex");
}

/** Answers are stored encrypted (a createApiKey answer holds the key's secret), bound to their row. */
class Sealer {
  private readonly key: Buffer;
  constructor(secret: string) {
    this.key = createHash("sha256").update(`tenantgraph idempotency:${secret}`).digest();
  }
  seal(text: string, aad: string): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(aad));
    const body = Buffer.concat([cipher.update(text, "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }
  open(data: Buffer, aad: string): string | null {
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.key, data.subarray(0, 12));
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(data.subarray(12, 28));
      return Buffer.concat([decipher.update(data.subarray(28)), decipher.final()]).toString("utf8");
    } catch {
      return null;
    }
  }
}

/** Codes whose answer a retry may change: such an answer is not kept. */
const RETRYABLE = new Set(["SERVICE_UNAVAILABLE", "TENANT_MOVING", "RATE_LIMITED", "QUERY_TIMEOUT", "IDEMPOTENCY_KEY_IN_USE", "SLOW_CONSUMER"]);

/** Kept: no error, or only deliberate refusals (coded, not "try again"). Unexpected errors are never kept. */
function storable(result: ExecutionResult): boolean {
  return (result.errors ?? []).every((e) => {
    const code = e.extensions?.code;
    return typeof code === "string" && !RETRYABLE.has(code);
  });
}

interface StoredError {
  message: string;
  locations?: { line: number; column: number }[];
  path?: (string | number)[];
  extensions?: Record<string, unknown>;
}

function serialize(result: ExecutionResult): string {
  const errors = result.errors?.map((e) => e.toJSON() as StoredError);
  return JSON.stringify(errors?.length ? { data: result.data ?? null, errors } : { data: result.data ?? null });
}

function revive(text: string): ExecutionResult {
  const stored = JSON.parse(text) as { data: Record<string, unknown> | null; errors?: StoredError[] };
  if (!stored.errors) return { data: stored.data };
  const errors = stored.errors.map((e) => {
    const error = new GraphQLError(e.message, { path: e.path, extensions: e.extensions });
    if (e.locations) (error as { locations?: unknown }).locations = e.locations;
    return error;
  });
  return { data: stored.data, errors };
}

export interface IdempotencyClaim {
  tenantId: string;
  caller: string;
  key: string;
}

export type ClaimOutcome = { claimed: IdempotencyClaim } | { replay: ExecutionResult };

export class Idempotency {
  private readonly sealer: Sealer;
  constructor(secret: string) {
    this.sealer = new Sealer(secret);
  }

  private static aad(c: IdempotencyClaim): string {
    return `${c.tenantId}\n${c.caller}\n${c.key}`;
  }

  /**
   * Claims the key for this request in the mutation's transaction (opened
   * by authorize()), or finds the answer stored under it. Throws
   * IDEMPOTENCY_KEY_REUSED or IDEMPOTENCY_KEY_IN_USE.
   */
  async claim(ctx: Context, key: string, hash: string): Promise<ClaimOutcome> {
    const tenant = ctx.tenant;
    const actor = ctx.actor;
    if (!tenant || !actor) throw badIdempotencyKey(`${IDEMPOTENCY_HEADER} is accepted on tenant mutations only`);
    const c: IdempotencyClaim = { tenantId: tenant.id, caller: `${actor.type === "USER" ? "user" : "key"}:${actor.id}`, key };
    // The advisory lock is held until this transaction ends: a concurrent
    // request with the same key is told IN_USE at once instead of waiting.
    const [row] = await ctx.tenantDb.queryRaw<{ got: boolean; claimed: boolean }>(Prisma.sql`
      WITH l AS (SELECT pg_try_advisory_xact_lock(hashtextextended(${`idempotency\n${Idempotency.aad(c)}`}, 0)) AS got),
      ins AS (
        INSERT INTO idempotency_keys (tenant_id, caller, key, request_hash, expires_at)
        SELECT ${c.tenantId}::uuid, ${c.caller}, ${c.key}, ${hash}, now() + make_interval(hours => ${IDEMPOTENCY_TTL_HOURS}::int)
          FROM l WHERE l.got
        ON CONFLICT (tenant_id, caller, key) DO UPDATE
          SET request_hash = EXCLUDED.request_hash, response = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
          WHERE idempotency_keys.expires_at <= now()
        RETURNING 1)
      SELECT (SELECT got FROM l) AS got, EXISTS (SELECT 1 FROM ins) AS claimed`);
    if (!row?.got) throw idempotencyKeyInUse();
    if (row.claimed) return { claimed: c };
    // A committed, unexpired row (a fresh snapshot: READ COMMITTED).
    const [stored] = await ctx.tenantDb.queryRaw<{ request_hash: string; response: Buffer | null }>(Prisma.sql`
      SELECT request_hash, response FROM idempotency_keys
       WHERE tenant_id = ${c.tenantId}::uuid AND caller = ${c.caller} AND key = ${c.key}`);
    if (!stored || !stored.response) throw idempotencyKeyInUse();
    if (stored.request_hash !== hash) throw idempotencyKeyReused();
    const text = this.sealer.open(stored.response, Idempotency.aad(c));
    // Sealed with another secret (JWT_SECRET changed): the answer cannot be
    // given back, and running again could do the change twice.
    if (text === null) throw idempotencyKeyReused();
    return { replay: revive(text) };
  }

  /**
   * Before the COMMIT: stores the answer under the claimed key (and deletes
   * up to 100 expired keys of the tenant), or releases the key when the
   * answer is one a retry may change.
   */
  async settle(ctx: Context, c: IdempotencyClaim, result: ExecutionResult): Promise<void> {
    let sealed: Buffer | null = null;
    try {
      if (storable(result)) sealed = this.sealer.seal(serialize(result), Idempotency.aad(c));
    } catch {
      sealed = null;
    }
    if (!sealed) {
      await ctx.tenantDb.queryRaw(Prisma.sql`
        DELETE FROM idempotency_keys WHERE tenant_id = ${c.tenantId}::uuid AND caller = ${c.caller} AND key = ${c.key}`);
      return;
    }
    await ctx.tenantDb.queryRaw(Prisma.sql`
      WITH expired AS (
        DELETE FROM idempotency_keys
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency_keys WHERE tenant_id = ${c.tenantId}::uuid AND expires_at <= now() LIMIT 100)))
      UPDATE idempotency_keys SET response = ${sealed}
       WHERE tenant_id = ${c.tenantId}::uuid AND caller = ${c.caller} AND key = ${c.key}`);
  }
}
