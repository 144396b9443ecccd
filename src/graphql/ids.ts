import { encodeGlobalID } from "@pothos/plugin-relay";
import { badInput, notFound } from "../errors.ts";
import { isUuid, NIL_UUID } from "../uuid.ts";

/** Relay global ids: base64("<Type>:<uuid>"), Pothos's own encoding. */
export const toGlobalId = encodeGlobalID;

export function fromGlobalId(field: string, globalId: string, expectedType: string): string {
  let decoded: string;
  try {
    decoded = Buffer.from(globalId, "base64").toString("utf8");
  } catch {
    throw badInput(field, `${field} is not a valid id`);
  }
  const sep = decoded.indexOf(":");
  const type = decoded.slice(0, sep);
  const id = decoded.slice(sep + 1);
  if (sep < 1 || !/^[A-Za-z]+$/.test(type) || !id) throw badInput(field, `${field} is not a valid id`);
  // A well-formed id of another type, or of no row we can see, is NOT_FOUND.
  if (type !== expectedType || !isUuid(id)) throw notFound(expectedType);
  return id;
}

/** The id itself when it is a UUID, else the nil UUID (a where that matches nothing). */
/** The tenant an input names by its `tenantId` (the platform mutations). */
export const tenantIdOf = (input: { tenantId: string | number }) => fromGlobalId("tenantId", String(input.tenantId), "Tenant");

export const uuidOrNone = (id: string) => (isUuid(id) ? id : NIL_UUID);
