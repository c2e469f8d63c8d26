// The `Refetch-Cursor` response header (docs/protocol.md): the server's cursor, taken before the
// handler read its data. A client that resumes its update stream from the oldest such cursor of
// the data it shows hears exactly what changed since that data was read.

import { listen } from "./listeners.js";

/** The response header a refetch server stamps on API responses. */
export const CURSOR_HEADER = "Refetch-Cursor";

/**
 * Orders two cursors of one server run (`<epoch>.<seq>`): negative when `a` is older. `null` when
 * they cannot be ordered (another run, another format): such a pair must be treated as a gap.
 */
export function compareCursors(a: string, b: string): number | null {
  const cut = (cursor: string) => {
    const dot = cursor.lastIndexOf(".");
    const seq = cursor.slice(dot + 1);
    return dot < 0 || !/^\d{1,30}$/.test(seq) ? null : { epoch: cursor.slice(0, dot), seq: BigInt(seq) };
  };
  const left = cut(a);
  const right = cut(b);
  if (!left || !right || left.epoch !== right.epoch) return null;
  return left.seq < right.seq ? -1 : left.seq > right.seq ? 1 : 0;
}

/** What a set of noted cursors says about the data read under them. */
export interface CursorSummary {
  /** How many responses carried a cursor. */
  count: number;
  /** The oldest of them; null when none, or when two could not be ordered. */
  oldest: string | null;
  /** Two cursors could not be ordered (e.g. read across a server restart). */
  mixed: boolean;
}

export type CursorListener = (cursor: string) => void;

/** Folds one cursor into a summary: the oldest wins; an unorderable pair makes it `mixed`. */
export function addCursor(summary: CursorSummary, cursor: string): CursorSummary {
  if (summary.count === 0) return { count: 1, oldest: cursor, mixed: false };
  if (summary.mixed || summary.oldest === null) return { count: summary.count + 1, oldest: null, mixed: true };
  const order = compareCursors(cursor, summary.oldest);
  if (order === null) return { count: summary.count + 1, oldest: null, mixed: true };
  return { count: summary.count + 1, oldest: order < 0 ? cursor : summary.oldest, mixed: false };
}

export const NO_CURSORS: CursorSummary = { count: 0, oldest: null, mixed: false };

/**
 * Collects the `Refetch-Cursor` of the API responses an app reads, so the update stream can start
 * from the oldest of them. Call `note()` from the app's fetch layer (an interceptor, a fetch
 * wrapper, a tRPC link): it takes a Response, its Headers or the header's value.
 */
export class CursorTracker {
  #summary: CursorSummary = NO_CURSORS;
  readonly #listeners = new Set<CursorListener>();

  /** Everything noted since this tracker was created. */
  get summary(): CursorSummary {
    return this.#summary;
  }

  note(from: Response | Headers | string | null | undefined): void {
    const cursor =
      typeof from === "string" || from === null || from === undefined
        ? from
        : "headers" in from
          ? from.headers.get(CURSOR_HEADER)
          : from.get(CURSOR_HEADER);
    if (!cursor) return;
    this.#summary = addCursor(this.#summary, cursor);
    for (const listener of [...this.#listeners]) listener(cursor);
  }

  /** A fetch that notes the cursor of every response, for clients that take a `fetch` option. */
  wrap(fetchImpl: typeof fetch = (input, init) => globalThis.fetch(input, init)): typeof fetch {
    return async (input, init) => {
      const response = await fetchImpl(input, init);
      this.note(response);
      return response;
    };
  }

  subscribe(listener: CursorListener): () => void {
    return listen(this.#listeners, listener);
  }
}
