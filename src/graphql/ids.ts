import { encodeGlobalID } from "@pothos/plugin-relay";
import { badInput, notFound } from "../errors.ts";
import { isUuid, NIL_UUID } from "../uuid.ts";

/** Relay global ids: base64("<Type>:<uuid>"), Pothos's own encoding. */
export const toGlobalId = encodeGlobalID;

/**
 * The one decoder of global ids (node, nodes and every id argument):
 * base64("<Type>:<uuid>"). Anything else is the caller's mistake:
 * BAD_USER_INPUT naming `field`, without echoing the input.
 */
export function decodeGlobalId(field: string, globalId: string): { typename: string; id: string } {
  const invalid = () => badInput(field, `${field} is not a valid id`);
  if (globalId.length > 200) throw invalid();
  // Strict base64: Buffer.from skips characters outside the alphabet, so
  // only the canonical spelling (what re-encoding gives back) is one id.
  const decoded = Buffer.from(globalId, "base64").toString("utf8");
  if (Buffer.from(decoded, "utf8").toString("base64") !== globalId) throw invalid();
  const match = /^([A-Za-z]{1,40}):([0-9a-fA-F-]{36})$/.exec(decoded);
  if (!match || !isUuid(match[2]!)) throw invalid();
  // One spelling of the UUID: loaders, stream filters and tenant checks compare strings.
  return { typename: match[1]!, id: match[2]!.toLowerCase() };
}

/** The uuid of an id argument of `expectedType`; a well-formed id of another type is NOT_FOUND, like one of no row we can see. */
export function fromGlobalId(field: string, globalId: string, expectedType: string): string {
  const { typename, id } = decodeGlobalId(field, globalId);
  if (typename !== expectedType) throw notFound(expectedType);
  return id;
}

/** The tenant an input names by its `tenantId` (the platform mutations). */
export const tenantIdOf = (input: { tenantId: string | number }) => fromGlobalId("tenantId", String(input.tenantId), "Tenant");

/** The id itself when it is a UUID, else the nil UUID (a where that matches nothing). */
export const uuidOrNone = (id: string) => (isUuid(id) ? id : NIL_UUID);
