import { isObjectType } from "graphql";
import { describe, expect, it } from "vitest";
import { builder } from "../../src/graphql/builder.ts";
import { schema } from "../../src/schema.ts";
import { NIL_UUID } from "../../src/uuid.ts";
import { decodeGlobalId, fromGlobalId } from "../../src/graphql/ids.ts";

const ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const encode = (type: string) => Buffer.from(`${type}:${ID}`).toString("base64");
const decode = (builder.options.relay as { decodeGlobalID: (id: string, ctx: unknown) => { typename: string; id: string } }).decodeGlobalID;

describe("global ids", () => {
  it("node(id) reaches exactly the types that implement Node, found from the builder (no hand-kept list)", () => {
    const nodeTypes = Object.values(schema.getTypeMap())
      .filter((t) => isObjectType(t) && t.getInterfaces().some((i) => i.name === "Node"))
      .map((t) => t.name)
      .sort();
    // Not vacuous: the eight node types of the SPEC.
    expect(nodeTypes).toEqual(["ApiKey", "AuditLogEntry", "Deployment", "Membership", "Project", "Tenant", "User", "Workflow"]);
    for (const type of nodeTypes) expect(decode(encode(type), {})).toEqual({ typename: type, id: ID });
    // A well-formed id of any other type finds nothing (the nil id), without an error.
    for (const type of ["Query", "Mutation", "Viewer", "Platform", "PageInfo", "Bogus"]) {
      expect(decode(encode(type), {})).toEqual({ typename: "Tenant", id: NIL_UUID });
    }
  });

  it("a malformed id is BAD_USER_INPUT naming the field, without echoing it", () => {
    for (const bad of ["", "not base64!", Buffer.from("Project:not-a-uuid").toString("base64"), "A".repeat(201)]) {
      let error: { extensions?: Record<string, unknown>; message?: string } | undefined;
      try {
        decode(bad, {});
      } catch (err) {
        error = err as typeof error;
      }
      expect(error?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "id" });
      if (bad) expect(error?.message).not.toContain(bad);
    }
  });

  it("an id argument is decoded by the same decoder: the same code, message and offending field as node(id)", () => {
    const caught = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return { message: (err as Error).message, extensions: (err as { extensions?: unknown }).extensions };
      }
      return undefined;
    };
    for (const bad of ["", "not base64!", Buffer.from("Project:not-a-uuid").toString("base64"), Buffer.from("Project:").toString("base64"), "A".repeat(201)]) {
      const asArgument = caught(() => fromGlobalId("id", bad, "Project"));
      expect(asArgument?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "id" });
      expect(asArgument).toEqual(caught(() => decode(bad, {})));
      expect(caught(() => fromGlobalId("input.projectId", bad, "Project"))?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.projectId" });
    }
    // A well-formed id of another type: NOT_FOUND as an argument, nothing found as a node.
    expect(caught(() => fromGlobalId("projectId", encode("Workflow"), "Project"))?.extensions).toMatchObject({ code: "NOT_FOUND" });
    expect(fromGlobalId("projectId", encode("Project"), "Project")).toBe(ID);
  });

  it("one spelling per id: the UUID comes back lower-case, and base64 with junk characters or padding of its own is refused (review-1745 F4)", () => {
    const upper = Buffer.from(`Project:${ID.toUpperCase()}`).toString("base64");
    expect(decodeGlobalId("id", upper)).toEqual({ typename: "Project", id: ID });
    expect(fromGlobalId("projectId", upper, "Project")).toBe(ID);
    const canonical = encode("Project");
    for (const junk of [canonical.replace(/(.{4})/g, "$1*"), ` ${canonical}`, canonical.replace(/=+$/, ""), `${canonical}=`, canonical.replace(/\+/g, "-").replace(/\//g, "_") + "!"]) {
      expect(() => decodeGlobalId("id", junk)).toThrow(/id is not a valid id/);
    }
    expect(decodeGlobalId("id", canonical)).toEqual({ typename: "Project", id: ID });
  });
});
