import { Prisma } from "../../generated/prisma/client.ts";
import { badInput } from "../../errors.ts";

/**
 * The time range of the platform analytics: `from`/`to` bound the activity
 * counts (deployments created and API requests counted in [from, to), API
 * requests by whole hours: their rows are hourly); members, projects and
 * workflows are the current counts. A range is counted from the rows
 * themselves (its cost follows the rows in it); no range reads the counters alone.
 */

export interface Range {
  from?: Date | null;
  to?: Date | null;
}

export function checkRange(range: Range) {
  if (range.from && range.to && range.from > range.to) throw badInput("from", "from must not be after to");
}

export const rangeOf = (column: string, range: Range) =>
  Prisma.sql`${range.from ? Prisma.sql`AND ${Prisma.raw(column)} >= ${range.from}` : Prisma.empty}
    ${range.to ? Prisma.sql`AND ${Prisma.raw(column)} < ${range.to}` : Prisma.empty}`;

export const isRanged = (range: Range) => range.from != null || range.to != null;
