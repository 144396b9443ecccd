import type { ObjectRef } from "@pothos/core";
import { builder, type BuilderTypes } from "./builder.ts";

type FieldType = ObjectRef<BuilderTypes, object> | "ID" | "String";
interface PayloadField {
  type: FieldType;
  nullable?: boolean;
  description?: string;
}
type ShapeOf<T extends FieldType> = T extends ObjectRef<BuilderTypes, infer S> ? S : string;
type PayloadShape<Fields extends Record<string, PayloadField>> = {
  [K in keyof Fields]: Fields[K]["nullable"] extends true ? ShapeOf<Fields[K]["type"]> | null : ShapeOf<Fields[K]["type"]>;
};

/** A mutation payload `{ <field>: <Type> }` (plus any further fields); its shape follows from the fields' types. */
export function payloadType<const Fields extends Record<string, PayloadField>>(name: string, fields: Fields) {
  type Shape = PayloadShape<Fields>;
  return builder.objectRef<Shape>(name).implement({
    fields: (t) =>
      Object.fromEntries(
        Object.entries(fields).map(([key, def]) => [
          key,
          t.field({
            type: def.type as ObjectRef<BuilderTypes, unknown>,
            nullable: def.nullable ?? false,
            description: def.description,
            resolve: (p) => p[key as keyof Shape],
          }),
        ]),
      ),
  });
}
