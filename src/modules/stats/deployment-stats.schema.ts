import { builder } from "../../graphql/builder.ts";
import { StatusCountRef } from "../platform/platform.schema.ts";
import { deploymentStats, type DeploymentStatsBucket } from "./deployment-stats.service.ts";

/** Advanced analytics of the tenant (plan feature advanced_analytics; docs/tenant-config.md). */

const StatsIntervalEnum = builder.enumType("StatsInterval", { values: ["DAY", "HOUR"] as const });

const DeploymentStatsBucketRef = builder.objectRef<DeploymentStatsBucket>("DeploymentStatsBucket").implement({
  fields: (t) => ({
    start: t.expose("start", { type: "DateTime", description: "Start of the UTC day or hour (deployments by creation time)." }),
    byStatus: t.field({ type: [StatusCountRef], description: "Every status, with its count (0 included).", resolve: (b) => b.byStatus }),
    medianReadySeconds: t.exposeFloat("medianReadySeconds", {
      nullable: true,
      description: "Median seconds from QUEUED to READY of the bucket's deployments that reached READY; null: none known.",
    }),
    p95ReadySeconds: t.exposeFloat("p95ReadySeconds", { nullable: true, description: "95th percentile of the same; null: none known." }),
  }),
});

builder.queryField("deploymentStats", (t) =>
  t.auth("ADMIN").field({
    type: [DeploymentStatsBucketRef],
    description: "The tenant's deployments per day or hour in [from, to): counts by status, QUEUED -> READY times (at most 1,000 buckets).",
    directives: { feature: { name: "advanced_analytics" } },
    args: {
      from: t.arg({ type: "DateTime", required: true }),
      to: t.arg({ type: "DateTime", required: true }),
      interval: t.arg({ type: StatsIntervalEnum, required: true, defaultValue: "DAY" }),
    },
    resolve: (_root, args, ctx) => deploymentStats(ctx, args.from, args.to, args.interval),
  }),
);
