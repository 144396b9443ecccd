import { builder } from "./builder.ts";
import {
  DeploymentStatus,
  Placement,
  Plan,
  QuotaResource,
  Role,
  TenantStatus,
  WorkflowStatus,
} from "../generated/prisma/enums.ts";

export const RoleEnum = builder.enumType(Role, { name: "Role" });
export const PlacementEnum = builder.enumType(Placement, { name: "Placement" });
export const PlanEnum = builder.enumType(Plan, { name: "Plan" });
export const TenantStatusEnum = builder.enumType(TenantStatus, { name: "TenantStatus" });
export const DeploymentStatusEnum = builder.enumType(DeploymentStatus, { name: "DeploymentStatus" });
export const WorkflowStatusEnum = builder.enumType(WorkflowStatus, { name: "WorkflowStatus" });
export const QuotaResourceEnum = builder.enumType(QuotaResource, { name: "QuotaResource" });
export const OrderDirectionEnum = builder.enumType("OrderDirection", { values: ["ASC", "DESC"] as const });
