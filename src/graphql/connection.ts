import type { ObjectRef } from "@pothos/core";
import { builder, type BuilderTypes } from "./builder.ts";

/**
 * `<Name>Connection` / `<Name>Edge` with `totalCount`. The count is a
 * function on the resolved connection (`Connection` of the builder's types),
 * so it costs a query only when asked.
 */
export function connectionType<Shape extends object>(ref: ObjectRef<BuilderTypes, Shape>, name: string) {
  return builder.connectionObject(
    {
      type: ref,
      name: `${name}Connection`,
      fields: (t) => ({
        totalCount: t.int({ resolve: (c) => c.totalCount() }),
      }),
    },
    { name: `${name}Edge` },
  );
}
