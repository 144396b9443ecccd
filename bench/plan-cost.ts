import { parse } from "graphql";
import { planQuery } from "../src/graphql/sql-plan-compile.ts";
import { sqlPlans, type PlanContext } from "../src/graphql/sql-plan.ts";
import { CursorCodec } from "../src/infra/cursor.ts";
import { deploymentSqlPlans } from "../src/modules/deployments/deployment.sql-plan.ts";
import { projectSqlPlans } from "../src/modules/projects/project.sql-plan.ts";
import { userSqlPlans } from "../src/modules/users/user.sql-plan.ts";
import { schema } from "../src/schema.ts";
import { dashboardQuery } from "./scenarios.ts";

/**
 * planQuery's time per call over the bench's dashboard (docs/performance.md,
 * "SQL plans: the compile cache"): the same document object every call (as
 * Yoga's parser cache hands it), one caller per tenant of two, in turn.
 *
 *   npx tsx bench/plan-cost.ts [calls=20000]
 *
 * Prints µs per call (median of 7 batches) and the statement's size.
 */

const plans = sqlPlans(projectSqlPlans, deploymentSqlPlans, userSqlPlans);
const cursors = new CursorCodec("0123456789abcdef0123456789abcdef");
const ctxOf = (tenant: string): PlanContext =>
  ({
    actor: { type: "USER", id: "u", label: "u" },
    user: { id: "3c901fde-d579-44f4-82d0-a23f6fbb847c", email: "u@x.test", name: null },
    tenant: { id: tenant, plan: "PRO", features: [], limits: {} },
    role: "VIEWER",
    cursors,
  }) as unknown as PlanContext;
const callers = [ctxOf("4e6a00a2-a105-40db-958f-35ee640b74e0"), ctxOf("9b1c2d3e-0000-4000-8000-000000000001")];
const document = parse(dashboardQuery());
const calls = Number(process.argv[2] ?? 20000);

let size = 0;
const batch = () => {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) {
    const planned = planQuery(schema, plans, callers[i % 2]!, document, undefined, {});
    if (!planned) throw new Error("the dashboard was not planned");
    size = planned.sql.values.length + planned.sql.text.length * 0; // the text as queryRaw reads it
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / calls;
};
batch(); // warm
const us = Array.from({ length: 7 }, batch).sort((a, b) => a - b);
console.log(`planQuery: ${us[3]!.toFixed(1)} µs per call (median of 7 batches of ${calls}; min ${us[0]!.toFixed(1)}, max ${us[6]!.toFixed(1)}); ${size} bound values`);
