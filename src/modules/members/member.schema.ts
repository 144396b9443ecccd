import { queryFromInfo } from "@pothos/plugin-prisma";
import { builder } from "../../graphql/builder.ts";
import { connectionType } from "../../graphql/connection.ts";
import { RoleEnum } from "../../graphql/enums.ts";
import { fromGlobalId, toGlobalId } from "../../graphql/ids.ts";
import { pageRequest, type Sort } from "../../graphql/pagination.ts";
import { payloadType } from "../../graphql/payload.ts";
import { MembershipRef } from "../users/user.schema.ts";
import { memberPage } from "./member.loaders.ts";
import * as service from "./member.service.ts";

export const MembershipConnection = connectionType(MembershipRef, "Membership");

/** Oldest first: the founding members lead the list. */
const MEMBER_SORT: Sort = { field: "createdAt", direction: "ASC" };

builder.queryField("members", (t) =>
  t.auth("VIEWER").field({
    type: MembershipConnection,
    description: "The members of the current tenant.",
    args: { first: t.arg.int(), after: t.arg.string() },
    resolve: async (_root, args, ctx, info) => {
      const page = pageRequest(ctx.cursors, args, MEMBER_SORT, "Membership");
      const query = queryFromInfo({ context: ctx, info, path: ["edges", "node"], typeName: "Membership" });
      return memberPage(ctx, page, query);
    },
  }),
);

const InviteMemberInput = builder.inputType("InviteMemberInput", {
  fields: (t) => ({
    email: t.field({ type: "EmailAddress", required: true }),
    role: t.field({ type: RoleEnum, required: true }),
    name: t.string(),
  }),
});
const InviteMemberPayload = payloadType("InviteMemberPayload", { membership: { type: MembershipRef } });

const UpdateMemberRoleInput = builder.inputType("UpdateMemberRoleInput", {
  fields: (t) => ({
    membershipId: t.id({ required: true }),
    role: t.field({ type: RoleEnum, required: true }),
  }),
});
const UpdateMemberRolePayload = payloadType("UpdateMemberRolePayload", { membership: { type: MembershipRef } });

const RemoveMemberInput = builder.inputType("RemoveMemberInput", {
  fields: (t) => ({ membershipId: t.id({ required: true }) }),
});
const RemoveMemberPayload = payloadType("RemoveMemberPayload", { removedMembershipId: { type: "ID" } });

builder.mutationFields((t) => ({
  inviteMember: t.auth("ADMIN").field({
    type: InviteMemberPayload,
    description: "Adds a member, creating the user by e-mail when there is none (subject = the lower-cased e-mail).",
    directives: {
      quota: { resource: "SEATS", cost: 1 },
      audit: { action: "member.invite" },
    },
    args: { input: t.arg({ type: InviteMemberInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      membership: await service.inviteMember(ctx, input),
    }),
  }),
  updateMemberRole: t.auth("ADMIN").field({
    type: UpdateMemberRolePayload,
    description: "Changes a member's role. Only an OWNER grants or revokes OWNER; the last OWNER stays.",
    directives: { audit: { action: "member.updateRole" } },
    args: { input: t.arg({ type: UpdateMemberRoleInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = fromGlobalId("membershipId", String(input.membershipId), "Membership");
      return { membership: await service.updateMemberRole(ctx, id, input.role, input) };
    },
  }),
  removeMember: t.auth("ADMIN").field({
    type: RemoveMemberPayload,
    description: "Removes a member. The last OWNER cannot be removed.",
    directives: { audit: { action: "member.remove" } },
    args: { input: t.arg({ type: RemoveMemberInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = fromGlobalId("membershipId", String(input.membershipId), "Membership");
      await service.removeMember(ctx, id, input);
      return { removedMembershipId: toGlobalId("Membership", id) };
    },
  }),
}));
