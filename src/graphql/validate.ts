import { badInput } from "../errors.ts";

/** Input checks shared by the mutations; each names the offending field. */
export const SLUG_RE = /^[a-z0-9-]{2,48}$/;

export function name(field: string, value: string): string {
  const v = value.trim();
  if (v.length < 1 || v.length > 100) throw badInput(field, `${field} must be 1 to 100 characters`);
  return v;
}

export function slug(field: string, value: string): string {
  if (!SLUG_RE.test(value)) throw badInput(field, `${field} must match ${SLUG_RE.source}`);
  return value;
}

export function slugify(value: string): string {
  const s = value
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 48);
  return s.length >= 2 ? s : `${s}-x`.slice(0, 48).padEnd(2, "x");
}

export function optionalText(field: string, value: string | null | undefined, max: number): string | null | undefined {
  if (value == null) return value;
  if (value.length > max) throw badInput(field, `${field} must be at most ${max} characters`);
  return value;
}
