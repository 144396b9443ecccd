/** UUIDs as PostgreSQL stores them: what every id in this schema is. */
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (s: string) => UUID_RE.test(s);

/** The nil UUID: a where that matches nothing, for ids that cannot exist. */
export const NIL_UUID = "00000000-0000-0000-0000-000000000000";
