// The `Refetch-Cursor` response header (docs/protocol.md): the server's cursor, taken before the
// handler read its data. A client that resumes its update stream from the oldest such cursor of
// the data it shows hears exactly what changed since that data was read.

import { Subscribable } from "./subscribable.js";

/** The response header a refetch server stamps on API responses. */
export const CURSOR_HEADER = "Refetch-Cursor";
/**
 * On the answer of a request that notified (a mutation): a cursor at or after its updates. A read
 * that starts after this answer sees them (docs/protocol.md).
 */
export const NOTIFIED_HEADER = "Refetch-Notified";

// The server's rule (refetch/_cursor.py, docs/protocol.md): at most 128 characters once trimmed,
// a non-empty epoch, a dot, 1 to 40 ASCII digits (a PostgreSQL position has up to 39). Both
// sides' tests read the same examples, tests/cursor_vectors.json.
const MAX_CURSOR_LENGTH = 128;
const POSITION = /^[0-9]{1,40}$/;

function parseCursor(text: string): { epoch: string; seq: bigint } | null {
  const cursor = text.trim();
  if (cursor.length > MAX_CURSOR_LENGTH) return null;
  const dot = cursor.lastIndexOf(".");
  const seq = cursor.slice(dot + 1);
  return dot < 1 || !POSITION.test(seq) ? null : { epoch: cursor.slice(0, dot), seq: BigInt(seq) };
}

/**
 * Orders two cursors of one server run (`<epoch>.<seq>`): negative when `a` is older. `null` when
 * they cannot be ordered (another run, another format): such a pair must be treated as a gap.
 */
export function compareCursors(a: string, b: string): number | null {
  const left = parseCursor(a);
  const right = parseCursor(b);
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
  readonly #noted = new Subscribable<string>();
  readonly #notified = new Subscribable<string>();

  /** Everything noted since this tracker was created. */
  get summary(): CursorSummary {
    return this.#summary;
  }

  /** A string is a `Refetch-Cursor` value; a Response or Headers also gives its `Refetch-Notified`. */
  note(from: Response | Headers | string | null | undefined): void {
    const headers = typeof from === "string" || from === null || from === undefined ? null : "headers" in from ? from.headers : from;
    const cursor = headers ? headers.get(CURSOR_HEADER) : (from as string | null | undefined);
    const notified = headers?.get(NOTIFIED_HEADER);
    if (cursor) {
      this.#summary = addCursor(this.#summary, cursor);
      this.#noted.notify(cursor);
    }
    if (notified) this.#notified.notify(notified);
  }

  /** A fetch that notes the cursor of every response, for clients that take a `fetch` option. */
  wrap(fetchImpl: typeof fetch = (input, init) => globalThis.fetch(input, init)): typeof fetch {
    return async (input, init) => {
      const response = await fetchImpl(input, init);
      this.note(response);
      return response;
    };
  }

  /** Called with each `Refetch-Cursor` noted. */
  subscribe(listener: CursorListener): () => void {
    return this.#noted.subscribe(listener);
  }

  /** Called with each `Refetch-Notified` noted: the app's own changes are numbered up to it. */
  onNotified(listener: CursorListener): () => void {
    return this.#notified.subscribe(listener);
  }
}
