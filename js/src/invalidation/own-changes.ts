// The tab that made a change: its mutation's answer carries `Refetch-Notified`, a cursor at or
// after the updates the request notified (docs/protocol.md). A read that starts after that answer
// sees the change, so the stream's frame for it has nothing new for a query refetched since (the
// app's own `onSuccess` invalidation): that frame is skipped for it.
//
// The frame is recognised by its id: a frame at or before the noted cursor carries only updates
// numbered at or before it, all committed before the answer. A noted cursor is used up by the first
// pass that reaches it (the change's own frame), and counts for at most `NOTED_FOR_MS` after it was
// noted (the frame comes within milliseconds); frames after that are news again. The server leaves
// the header out while it cannot number its updates in order (a broker it cannot hear); the time
// bound covers an outage that begins between the answer and the frame.
import { compareCursors } from "../cursors.js";

/** How long a noted cursor may spare a frame its fetch. */
export const NOTED_FOR_MS = 2000;

export class OwnChanges {
  // The newest `Refetch-Notified` noted, and the newest frame cursor handled.
  #noted: string | null = null;
  #handled: string | null = null;
  // When each recent cursor was noted.
  readonly #times = new Map<string, number>();

  /** The newest cursor the app's own changes are numbered up to: note it when a fetch starts. */
  get latest(): string | null {
    return this.#noted;
  }

  /** A `Refetch-Notified` of one of the app's answers. */
  note(cursor: string): void {
    const now = Date.now();
    for (const [old, at] of this.#times) if (now - at > NOTED_FOR_MS) this.#times.delete(old);
    this.#times.set(cursor, now);
    const order = this.#noted === null ? null : compareCursors(cursor, this.#noted);
    // One of another server run: the newest word (cursors of two runs never match a frame).
    if (order === null || order > 0) this.#noted = cursor;
  }

  /**
   * A read started after an answer named `noted` has seen every update of a pass whose frames are
   * all at or before `cursor`: true when `cursor` is at or before `noted`, no pass has reached
   * `noted` yet, and it was noted at most `NOTED_FOR_MS` ago.
   */
  seen(noted: string | null | undefined, cursor: string | null): boolean {
    if (!noted || !cursor) return false;
    const at = this.#times.get(noted);
    if (at === undefined || Date.now() - at > NOTED_FOR_MS) return false;
    const order = compareCursors(cursor, noted);
    if (order === null || order > 0) return false;
    // Used up once a pass reached it; a handled cursor of another run counts as reached.
    const used = this.#handled === null ? -1 : compareCursors(this.#handled, noted);
    return used !== null && used < 0;
  }

  /** A pass over frames up to `cursor` ran. */
  handled(cursor: string | null): void {
    if (!cursor) return;
    const order = this.#handled === null ? null : compareCursors(cursor, this.#handled);
    if (order === null || order > 0) this.#handled = cursor;
  }
}

/** The newer of two frame cursors; null (unknown) wins, and so does a pair that cannot be ordered. */
export function newestOf(a: string | null | undefined, b: string | null): string | null {
  if (a === undefined) return b;
  if (a === null || b === null) return null;
  const order = compareCursors(a, b);
  return order === null ? null : order >= 0 ? a : b;
}
