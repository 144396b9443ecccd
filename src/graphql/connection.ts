import { builder } from "./builder.ts";
import type { Connection } from "./pagination.ts";

/**
 * `<Name>Connection` / `<Name>Edge` with `totalCount`. The count is a
 * function on the resolved connection, so it costs a query only when asked.
 */
export function connectionType<T extends object>(ref: any, name: string) {
  return builder.connectionObject(
    {
      type: ref,
      name: `${name}Connection`,
      fields: (t: any) => ({
        totalCount: t.int({ resolve: (c: Connection<T>) => c.totalCount() }),
      }),
    } as any,
    { name: `${name}Edge` } as any,
  );
}
