/**
 * The layers of src/ (docs/architecture.md), top to bottom. A file may
 * import its own folder and the layers below its own, never one above, and
 * no import cycle is allowed anywhere. `npm run lint:deps` checks it (CI).
 */
const LAYERS = [
  ["entry", "^src/(server|app)\\.ts$"],
  ["http", "^src/http/"],
  ["schema", "^src/schema\\.ts$"],
  ["modules", "^src/modules/"],
  ["graphql", "^src/graphql/"],
  ["policy", "^src/policy/"],
  ["tenancy", "^src/tenancy/"],
  ["infra", "^src/infra/"],
  ["db", "^src/db/"],
  ["base", "^src/(config|errors|uuid)\\.ts$|^src/config/|^src/generated/"],
];

/** One rule per layer: nothing it imports from src/ may belong to a layer above it. */
const layerRules = LAYERS.slice(1).map(([name, path], i) => ({
  name: `layer-${name}`,
  comment: `${name} imports only ${name} and the layers below it (${LAYERS.slice(i + 2).map(([n]) => n).join(", ")})`,
  severity: "error",
  from: { path },
  to: { path: LAYERS.slice(0, i + 1).map(([, p]) => `(${p})`).join("|") },
}));

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "An import cycle makes the order of module evaluation (and so the schema) depend on who is imported first.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: "services-below-schema",
      comment: "A module's service never imports a *.schema.ts file: resolvers call services, not the other way round.",
      severity: "error",
      from: { path: "^src/modules/.+\\.service\\.ts$" },
      to: { path: "\\.schema\\.ts$" },
    },
    {
      name: "platform-client-cross-tenant-only",
      comment:
        "The platform client and the placements' pools of a request are bound by the context builder and read by the cross-tenant path alone (crossTenant() and the placements it hands its callback, placementsForMove(), platformStore(), platformDirectory(), exportedTenant(), crossTenantReader() in src/policy/platform.ts): no resolver, service or loader reaches them.",
      severity: "error",
      from: { pathNot: "^src/(tenancy/context|policy/platform)\\.ts$" },
      to: { path: "^src/tenancy/platform-client\\.ts$" },
    },
    {
      name: "cross-tenant-path-entered-by-enforcer",
      comment:
        "Only the enforcer (which runs an admitted @crossTenant field's resolver on the cross-tenant path) and src/policy/platform.ts (which checks it: crossTenant(), placementsForMove(), platformStore(), platformDirectory()) use src/policy/cross-tenant-path.ts.",
      severity: "error",
      from: { pathNot: "^src/policy/(enforcer|platform)\\.ts$" },
      to: { path: "^src/policy/cross-tenant-path\\.ts$" },
    },
    {
      name: "clients-not-from-requests",
      comment:
        "The database clients and the placements' pools (src/db/clients.ts) reach the request path through the context builder only: no plugin, resolver, service or loader imports them (the live hub reads events in placements with pools of its own).",
      severity: "error",
      from: { path: "^src/(http|graphql|modules)/", pathNot: "^src/modules/live/hub\\.ts$" },
      to: { path: "^src/db/clients\\.ts$" },
    },
    {
      name: "every-file-in-a-layer",
      comment: "A new top-level file or folder in src/ must be placed in a layer (here and in docs/architecture.md).",
      severity: "error",
      from: { path: "^src/", pathNot: LAYERS.map(([, p]) => `(${p})`).join("|") },
      to: {},
    },
    {
      name: "src-never-imports-tests",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^(test|bench|scripts)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^src/generated/prisma/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default"] },
  },
};
