import { queryFromInfo } from "@pothos/plugin-prisma";
import { builder } from "../../graphql/builder.ts";
import { connectionType } from "../../graphql/connection.ts";
import { RoleEnum } from "../../graphql/enums.ts";
import { fromGlobalId, uuidOrNone } from "../../graphql/ids.ts";
import { DEFAULT_SORT, pageRequest } from "../../graphql/pagination.ts";
import { payloadType } from "../../graphql/payload.ts";
import { apiKeyPage } from "./api-key.loaders.ts";
import * as service from "./api-key.service.ts";

// @auth on the type: `node(id)` with a key's id is ADMIN-only too.
export const ApiKeyRef = builder.prismaNode("ApiKey", {
  id: { resolve: (k) => k.id },
  findUnique: (id, ctx) => ({ tenantId_id: { tenantId: ctx.tenant?.id ?? uuidOrNone(""), id: uuidOrNone(id) } }),
  nullable: true,
  directives: { auth: { requires: "ADMIN" } },
  fields: (t) => ({
    name: t.exposeString("name"),
    role: t.expose("role", { type: RoleEnum }),
    prefix: t.exposeString("prefix", { description: "The visible start of the secret (tgk_...)." }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    lastUsedAt: t.expose("lastUsedAt", { type: "DateTime", nullable: true, description: "Exact to the minute." }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", nullable: true }),
    revokedAt: t.expose("revokedAt", { type: "DateTime", nullable: true }),
  }),
});

export const ApiKeyConnection = connectionType(ApiKeyRef, "ApiKey");

builder.queryField("apiKeys", (t) =>
  t.auth("ADMIN").field({
    type: ApiKeyConnection,
    description: "The tenant's API keys, newest first.",
    args: { first: t.arg.int(), after: t.arg.string() },
    resolve: async (_root, args, ctx, info) => {
      const page = pageRequest(ctx.cursors, args, DEFAULT_SORT, "ApiKey");
      const query = queryFromInfo({ context: ctx, info, path: ["edges", "node"], typeName: "ApiKey" });
      return apiKeyPage(ctx, page, query);
    },
  }),
);

const CreateApiKeyInput = builder.inputType("CreateApiKeyInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    role: t.field({ type: RoleEnum, required: true, description: "VIEWER, DEVELOPER or ADMIN." }),
    expiresAt: t.field({ type: "DateTime" }),
  }),
});
const RotateApiKeyInput = builder.inputType("RotateApiKeyInput", {
  fields: (t) => ({
    id: t.id({ required: true }),
    gracePeriodMinutes: t.int({ description: "How long the old secret keeps working (default 60, 0 = not at all)." }),
  }),
});
const RevokeApiKeyInput = builder.inputType("RevokeApiKeyInput", {
  fields: (t) => ({ id: t.id({ required: true }) }),
});

const secretField = { type: "String", description: "The secret: shown once, never again." } as const;
const CreateApiKeyPayload = payloadType("CreateApiKeyPayload", { apiKey: { type: ApiKeyRef }, secret: secretField });
const RotateApiKeyPayload = payloadType("RotateApiKeyPayload", { apiKey: { type: ApiKeyRef }, secret: secretField });
const RevokeApiKeyPayload = payloadType("RevokeApiKeyPayload", { apiKey: { type: ApiKeyRef } });

builder.mutationFields((t) => ({
  createApiKey: t.auth("ADMIN").field({
    type: CreateApiKeyPayload,
    directives: { feature: { name: "api_access" }, audit: { action: "apiKey.create" } },
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const { apiKey, secret } = await service.createApiKey(ctx, input);
      return { apiKey: apiKey, secret };
    },
  }),
  rotateApiKey: t.auth("ADMIN").field({
    type: RotateApiKeyPayload,
    directives: { feature: { name: "api_access" }, audit: { action: "apiKey.rotate" } },
    args: { input: t.arg({ type: RotateApiKeyInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = fromGlobalId("id", String(input.id), "ApiKey");
      const { apiKey, secret } = await service.rotateApiKey(ctx, id, input);
      return { apiKey: apiKey, secret };
    },
  }),
  revokeApiKey: t.auth("ADMIN").field({
    type: RevokeApiKeyPayload,
    directives: { audit: { action: "apiKey.revoke" } },
    args: { input: t.arg({ type: RevokeApiKeyInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = fromGlobalId("id", String(input.id), "ApiKey");
      return { apiKey: await service.revokeApiKey(ctx, id, input) };
    },
  }),
}));
