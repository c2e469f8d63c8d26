// What the Vue, Svelte and Solid adapters share about opening the stream: which options make a new
// stream and how the latest options reach a connect. React keeps its own (a dependency array).
import type { UpdateTag } from "../invalidation/query-invalidator.js";
import type { UpdateType } from "../protocol.js";
import type { ConnectOptions, QueryUpdates } from "./session.js";

export interface AdapterConnectOptions extends ConnectOptions {
  /** false: no connection (e.g. while signed out). Default true. The cursor carries across. */
  enabled?: boolean;
}

/**
 * The options whose change makes a new stream (which resumes from the previous one's cursor);
 * `headers` is read on each connect and the rest when the stream is created.
 */
export function streamIdentity(options: AdapterConnectOptions): readonly unknown[] {
  return [
    options.stream,
    options.enabled ?? true,
    String(options.url ?? "/api/updates"),
    options.types ? [...options.types].join(",") : "",
    options.share ?? true,
    options.credentials,
    options.cursors,
  ];
}

export function sameIdentity(a: readonly unknown[] | null, b: readonly unknown[]): boolean {
  return a !== null && a.length === b.length && a.every((value, index) => Object.is(value, b[index]));
}

/** Connects with these options; `latest()` is asked for the headers on every (re)connect. */
export function connectLatest(
  session: QueryUpdates,
  options: AdapterConnectOptions,
  latest: () => AdapterConnectOptions,
): () => void {
  const { enabled: _enabled, ...connectOptions } = options;
  return session.connect({
    ...connectOptions,
    // Read at connect time, so a new token needs no new stream.
    headers: async () => {
      const headers = latest().headers;
      return (typeof headers === "function" ? await headers() : headers) ?? {};
    },
  });
}

/** The tags `useAutoRefetch(query, types, { keys })` declares, in every adapter. */
export function tagsFor(types: UpdateType | readonly UpdateType[], keys?: readonly (string | number)[]): UpdateTag[] {
  const list: readonly UpdateType[] = Array.isArray(types) ? types : [types as UpdateType];
  return list.map((type) => (keys ? { type, keys } : type));
}
