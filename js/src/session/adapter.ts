// What every framework adapter shares about opening the stream: which options make a new stream
// and how the latest options reach a connect. React and SWR use the identity as an effect's
// dependency array; Vue, Svelte and Solid compare it themselves.
import type { ConnectOptions, SessionInvalidator, UpdatesSession } from "./session.js";

export interface AdapterConnectOptions extends ConnectOptions {
  /** false: no connection (e.g. while signed out). Default true. The cursor carries across. */
  enabled?: boolean;
}

/**
 * The options whose change makes a new stream (which resumes from the previous one's cursor);
 * `headers` is read on each connect and the rest when the stream is created. Always as long.
 */
export function streamIdentity(options: AdapterConnectOptions): readonly unknown[] {
  return [
    options.stream,
    options.enabled ?? true,
    String(options.url ?? "/api/updates"),
    options.types ? [...options.types].join(",") : "",
    options.watchTypes?.join(","), // undefined (from the hello) is not [] (never)
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
  session: UpdatesSession<SessionInvalidator>,
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
