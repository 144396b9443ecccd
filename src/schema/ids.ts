import { badInput, notFound } from "../errors.ts";
import { isUuid } from "../tenancy/directory.ts";

/** Relay global ids: base64url("<Type>:<uuid>"), the encoding Pothos uses. */
export const toGlobalId = (type: string, id: string) => Buffer.from(`${type}:${id}`).toString("base64");

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

/** The nil UUID: a where that matches nothing, for ids that cannot exist. */
export const NO_ROW = "00000000-0000-0000-0000-000000000000";
export const uuidOrNone = (id: string) => (isUuid(id) ? id : NO_ROW);
