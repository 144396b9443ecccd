import { createHmac, timingSafeEqual } from "node:crypto";
import { badInput } from "../errors.ts";

/**
 * Opaque keyset cursors: the sort they were made for, the sort key's value
 * and the row id, signed with an HMAC so a tampered or forged cursor is
 * refused (BAD_USER_INPUT) rather than silently repositioned.
 */
export interface CursorPayload {
  /** Sort signature, e.g. "createdAt:DESC". */
  s: string;
  /** Sort key value (ISO date or string). */
  v: string | null;
  id: string;
}

/**
 * Encodes and checks cursors with a key derived from the server's secret.
 * One per app (src/app.ts, from the config's secret), reaching the
 * pagination code through the request context (`ctx.cursors`), never
 * through a module global. The key is an ECMAScript private field: no cast,
 * `Object.keys` or `JSON.stringify` of the context reaches it.
 */
export class CursorCodec {
  readonly #key: Buffer;

  constructor(secret: string) {
    this.#key = createHmac("sha256", secret).update("cursor-key").digest();
  }

  #sign(body: string): string {
    return createHmac("sha256", this.#key).update(body).digest("base64url").slice(0, 22);
  }

  encode(payload: CursorPayload): string {
    const body = Buffer.from(JSON.stringify(payload)).toString("base64url");
    return `${body}.${this.#sign(body)}`;
  }

  /** The payload of a cursor made by this codec for `expectedSort`; BAD_USER_INPUT naming `field` otherwise. */
  decode(cursor: string, field: string, expectedSort: string): CursorPayload {
    const [body, mac, extra] = cursor.split(".");
    const invalid = () => badInput(field, `Invalid cursor for ${field}`);
    if (!body || !mac || extra !== undefined || cursor.length > 1024) throw invalid();
    const expected = Buffer.from(this.#sign(body));
    const given = Buffer.from(mac);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw invalid();
    let payload: CursorPayload;
    try {
      payload = JSON.parse(Buffer.from(body, "base64url").toString("utf8"));
    } catch {
      throw invalid();
    }
    if (typeof payload?.id !== "string" || typeof payload.s !== "string") throw invalid();
    if (payload.s !== expectedSort) {
      throw badInput(field, `Cursor was made for order ${payload.s}, not ${expectedSort}`);
    }
    return payload;
  }
}
