import type { SqlPlans } from "../../graphql/sql-plan.ts";

/** User's fields for SQL-planned queries (docs/sql-plans.md); who is visible is the declaring relation's (app_visible_user). */
export const userSqlPlans: SqlPlans = {
  User: {
    id: { kind: "column", column: "id", format: "globalId" },
    email: { kind: "column", column: "email", format: "string" },
    name: { kind: "column", column: "name", format: "string" },
  },
};
