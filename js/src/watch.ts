// Which keys a client shows, per update type, and how a stream says so on the wire (docs/protocol.md,
// "Watched keys"): `?watch=compute:eu-1&watch=compute:us-1`, one `<type>:<key>` per parameter. A
// server that polls per key (`poller("compute", key=region, on_demand=True)`) polls only the keys
// some open stream watches. Delivery is unchanged: a stream still hears every update of its types.

/** The server's bounds: at most this many watched keys per type, each at most this long. */
export const WATCH_MAX_KEYS = 64;
export const WATCH_MAX_KEY_LENGTH = 128;
/** ...and at most this many in one request, all types together. */
export const WATCH_MAX_ENTRIES = 256;

/**
 * Per update type, what a client shows of it: `"all"` (something shows the whole type, or more
 * keys than can be watched), or only these keys. A type that is absent is shown by nothing; it
 * costs the server the whole type all the same (the wire cannot say "none": see `watchEntries`).
 */
export type Watched = ReadonlyMap<string, ReadonlySet<string> | "all">;

export const NOTHING_WATCHED: Watched = new Map();

/** Adds one tag (a type, with or without keys) to a Watched under construction. */
export function addWatched(
  into: Map<string, Set<string> | "all">,
  type: string,
  keys: readonly string[] | undefined,
): void {
  const current = into.get(type);
  if (current === "all") return;
  if (keys === undefined || keys.some((key) => key.length > WATCH_MAX_KEY_LENGTH)) {
    // A key the server would refuse cannot be watched: the whole type, never a key left unpolled.
    into.set(type, "all");
    return;
  }
  const set = current ?? new Set<string>();
  for (const key of keys) set.add(key);
  into.set(type, set.size > WATCH_MAX_KEYS ? "all" : set);
}

/** What several tabs (or components) watch together: "all" wins, keys add up, absent is neutral. */
export function unionWatched(list: readonly Watched[]): Watched {
  const out = new Map<string, Set<string> | "all">();
  for (const watched of list) {
    for (const [type, keys] of watched) addWatched(out, type, keys === "all" ? undefined : [...keys]);
  }
  return out;
}

/**
 * The `watch` parameter values for a stream of these types (undefined: every type), sorted so equal
 * sets give equal URLs. Only types watched by key appear: a type shown whole, or by nothing, is
 * left out, which the server reads as the whole type.
 */
export function watchEntries(watched: Watched, types?: readonly string[]): string[] {
  const entries: string[] = [];
  for (const [type, keys] of watched) {
    if (keys === "all" || (types && types.length > 0 && !types.includes(type))) continue;
    for (const key of keys) entries.push(`${type}:${key}`);
  }
  // Over the request's bound (several types, each within its own): every type is watched whole.
  return entries.length > WATCH_MAX_ENTRIES ? [] : entries.sort();
}

export function sameEntries(a: readonly string[] | null, b: readonly string[]): boolean {
  return a !== null && a.length === b.length && a.every((entry, index) => entry === b[index]);
}

/** A Watched as plain JSON (for the cross-tab relay), and back; null for anything malformed. */
export type WatchedJson = [string, string[] | null][];

export function watchedToJson(watched: Watched): WatchedJson {
  return [...watched].map(([type, keys]) => [type, keys === "all" ? null : [...keys]]);
}

export function watchedFromJson(value: unknown): Watched | null {
  if (!Array.isArray(value)) return null;
  const out = new Map<string, Set<string> | "all">();
  for (const item of value) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== "string") return null;
    const keys: unknown = item[1];
    if (keys !== null && !(Array.isArray(keys) && keys.every((key) => typeof key === "string"))) return null;
    addWatched(out, item[0], keys === null ? undefined : (keys as string[]));
  }
  return out;
}
