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

let secret = Buffer.from("tenantgraph-cursor-default");

export function setCursorSecret(value: string) {
  secret = createHmac("sha256", value).update("cursor-key").digest();
}

const sign = (body: string) => createHmac("sha256", secret).update(body).digest("base64url").slice(0, 22);

export function encodeCursor(payload: CursorPayload): string {
  const body = Buffer.from(JSON.stringify(payload)).toString("base64url");
  return `${body}.${sign(body)}`;
}

export function decodeCursor(cursor: string, field: string, expectedSort: string): CursorPayload {
  const [body, mac, extra] = cursor.split(".");
  const invalid = () => badInput(field, `Invalid cursor for ${field}`);
  if (!body || !mac || extra !== undefined || cursor.length > 1024) throw invalid();
  const expected = Buffer.from(sign(body));
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
