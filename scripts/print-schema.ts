import { writeFileSync } from "node:fs";
import path from "node:path";
import { printSchema } from "../src/schema.ts";

const target = path.resolve(import.meta.dirname, "../schema.graphql");
writeFileSync(target, printSchema());
console.log(`wrote ${path.relative(process.cwd(), target)}`);
