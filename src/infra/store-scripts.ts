/**
 * The Lua scripts of the Redis store (./store.ts) and what the in-process
 * store (./memory-store.ts) does in their place.
 */

/**
 * What a counted read (Store.readAndHit) asks of one entry before it counts:
 * the entry is a JSON object, and each field named here holds this string,
 * or (true) is present and not null.
 */
export type Admission = Record<string, string | true>;

/** Whether the stored text `text` meets `admission` (the JS twin of `admits` in READ_HIT_SCRIPT). */
export function admits(text: string | null, admission: Admission): boolean {
  if (text === null) return false;
  let entry: unknown;
  try {
    entry = JSON.parse(text);
  } catch {
    return false;
  }
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) return false;
  const fields = entry as Record<string, unknown>;
  return Object.entries(admission).every(([field, want]) =>
    want === true ? fields[field] !== undefined && fields[field] !== null : fields[field] === want,
  );
}

// INCRBY and PEXPIRE in one atomic step, so that replicas sharing one Redis
// agree on the count and a crash cannot leave a counter without expiry.
const HIT = `
local function hit(key, windowMs, by)
  local c = redis.call('INCRBY', key, by)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, windowMs)
    ttl = tonumber(windowMs)
  end
  return {c, ttl}
end`;

/** KEYS[1]: the counter; ARGV: window (ms), increment. Returns [count in the window, ms until it resets]. */
export const HIT_SCRIPT = `${HIT}
return hit(KEYS[1], ARGV[1], ARGV[2])`;

/**
 * KEYS: the entries to read, then the counter (all of one hash tag: one
 * cluster slot). ARGV[1]: the counter's window (ms); ARGV[2]: a JSON array
 * of one Admission per entry. Returns [count or nil, entry 1 or nil, ...]:
 * the counter is hit only when every entry is present and admitted.
 */
export const READ_HIT_SCRIPT = `${HIT}
local function admits(text, want)
  if not text then return false end
  local ok, entry = pcall(cjson.decode, text)
  if not ok or type(entry) ~= 'table' then return false end
  for field, value in pairs(want) do
    local got = entry[field]
    if value == true then
      if got == nil or got == cjson.null then return false end
    elseif got ~= value then
      return false
    end
  end
  return true
end
local n = #KEYS - 1
local want = cjson.decode(ARGV[2])
local out = {false}
local admitted = true
for i = 1, n do
  local text = redis.call('GET', KEYS[i])
  out[i + 1] = text
  admitted = admitted and admits(text, want[i] or {})
end
if admitted then out[1] = hit(KEYS[n + 1], ARGV[1], 1)[1] end
return out`;
