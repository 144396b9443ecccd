import { builder } from "./builder.ts";

/** A mutation payload `{ <field>: <Type> }` (plus any further fields). */
export function payloadType<Shape extends Record<string, unknown>>(
  name: string,
  fields: { [K in keyof Shape]: { type: any; nullable?: boolean } },
) {
  return builder.objectRef<Shape>(name).implement({
    fields: (t) =>
      Object.fromEntries(
        Object.entries(fields).map(([key, def]) => [
          key,
          t.field({ type: def.type, nullable: def.nullable ?? false, resolve: (p: any) => p[key] } as any),
        ]),
      ) as any,
  });
}
