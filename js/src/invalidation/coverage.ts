// Cursor coverage: from which cursor the attached sources deliver every change, and so which
// cached data may have missed one. The data's side is what the app read (the `Refetch-Cursor`s a
// CursorTracker noted) and the cursor the previous source stopped at; the stream's side is where
// each source started. Data read before that start is suspect: the invalidator refetches it once.
// Nothing here knows the cache: it asks the invalidator for its fetch clock and names suspect
// fetches by the tick they started at or before.
import { addCursor, compareCursors, NO_CURSORS, type CursorSummary, type CursorTracker } from "../cursors.js";
import type { StreamStatus, UpdateSource } from "../protocol.js";

/** From which cursor the attached source delivers everything, and since which fetch. */
interface SourceCoverage {
  source: UpdateSource;
  /** The cursor the source delivers everything after; null until it is open. */
  base: string | null;
  /**
   * Data read at this cursor or later is covered: `base`, or, when the source resumed from the
   * previous source's last cursor, the start of that unbroken chain of sources.
   */
  judge: string | null;
  /** Fetches started at or before this tick predate the coverage. */
  tick: number;
}

export class CursorCoverage {
  readonly #clock: () => number;
  readonly #suspect: (tick: number, running: boolean) => void;
  #cursors: CursorTracker | null = null;
  #offCursors: (() => void) | null = null;
  // Cursors noted while no source covered them; judged when the next one opens.
  #uncovered: CursorSummary = NO_CURSORS;
  #coverage: SourceCoverage | null = null;
  // The last cursor of a source that went away: the next source starts from it.
  #carry: string | null = null;
  // The `judge` of the last coverage: where its unbroken chain of sources began.
  #chain: string | null = null;
  // What handOut() gave the source being connected (undefined: it did not ask).
  #handedOut: string | null | undefined = undefined;

  /**
   * The invalidator's side: `clock()` is the tick of its latest fetch start; `suspect(tick,
   * running)` says that fetches started at or before `tick` may miss changes (with `running`,
   * only those still running).
   */
  constructor(clock: () => number, suspect: (tick: number, running: boolean) => void) {
    this.#clock = clock;
    this.#suspect = suspect;
  }

  /** The cursor the next source starts from, once it is known. */
  get carried(): string | null {
    return this.#carry;
  }

  /** The next start cursor comes from the data read so far: the fetches in flight should answer first. */
  get fromReads(): boolean {
    return this.#carry === null && this.#cursors !== null;
  }

  /** Notes the `Refetch-Cursor`s this tracker collects (the app's API responses). */
  useCursors(cursors: CursorTracker | null): void {
    if (cursors === this.#cursors) return;
    this.#offCursors?.();
    this.#offCursors = null;
    this.#cursors = cursors;
    if (!cursors) return;
    // Responses that came before this call count too.
    this.#uncovered = merge(this.#uncovered, cursors.summary);
    this.#offCursors = cursors.subscribe((cursor) => this.#noted(cursor));
  }

  /**
   * The cursor a source should start from: the previous source's cursor; else the oldest cursor of
   * the data read so far; else null (the source starts fresh, and what was fetched before it
   * opened is suspect).
   */
  handOut(): string | null {
    const cursor = this.#carry ?? (this.#uncovered.mixed ? null : this.#uncovered.oldest);
    this.#handedOut = cursor;
    return cursor;
  }

  /** Tracks what this source covers; returns the detach, after which its last cursor is carried. */
  attach(source: UpdateSource): () => void {
    if (this.#coverage && this.#coverage.source !== source) this.#uncover();
    this.#coverage = { source, base: null, judge: null, tick: Infinity };
    const offStatus = source.onStatus((status) => this.#status(source, status));
    this.#status(source, source.status);
    return () => {
      offStatus();
      if (this.#coverage?.source === source) this.#uncover();
    };
  }

  #status(source: UpdateSource, status: StreamStatus): void {
    const coverage = this.#coverage;
    if (status !== "open" || !coverage || coverage.source !== source || coverage.base !== null) return;
    // Everything after `base` reaches this client: a resumed stream replays from the cursor it
    // sent, a fresh one starts at its hello, a follower tab at its leader's cursor.
    const sent = this.#handedOut;
    this.#handedOut = undefined;
    const base = sent ?? source.cursor;
    // Resumed from where the previous source stopped: no break since that chain began.
    const chained = sent != null && sent === this.#carry && this.#chain !== null;
    const judge = chained ? this.#chain : base;
    this.#chain = judge;
    coverage.tick = this.#clock();
    coverage.base = base;
    coverage.judge = judge;
    // What the cached data was read at: the cursors noted while no source was open, and the
    // carried cursor, up to which the data cached before was kept fresh.
    let reads = this.#uncovered;
    this.#uncovered = NO_CURSORS;
    if (!chained && this.#carry !== null) reads = addCursor(reads, this.#carry);
    // Without a tracker or a carried cursor nothing says when the data was read.
    const unknown = reads.count === 0 && this.#cursors === null && this.#carry === null;
    if (judge === null || unknown || reads.mixed || (reads.oldest !== null && isOlder(reads.oldest, judge))) {
      this.#suspect(coverage.tick, false);
    }
  }

  #noted(cursor: string): void {
    const coverage = this.#coverage;
    if (!coverage || coverage.judge === null) {
      this.#uncovered = addCursor(this.#uncovered, cursor);
      return;
    }
    // A response read before the source's base (a fetch that outlasted cursorWaitMs). It belongs
    // to a query still fetching (its queryFn has not returned yet), one started before the base.
    if (isOlder(cursor, coverage.judge)) this.#suspect(coverage.tick, true);
  }

  #uncover(): void {
    const coverage = this.#coverage;
    this.#coverage = null;
    this.#handedOut = undefined;
    if (coverage && coverage.base !== null) this.#carry = coverage.source.cursor ?? coverage.base;
  }
}

function merge(into: CursorSummary, from: CursorSummary): CursorSummary {
  if (from.count === 0) return into;
  if (into.count === 0) return from;
  if (from.mixed || from.oldest === null) return { count: into.count + from.count, oldest: null, mixed: true };
  const merged = addCursor(into, from.oldest);
  return { ...merged, count: into.count + from.count };
}

/** `a` is older than `b`, or they cannot be ordered (a gap either way). */
function isOlder(a: string, b: string): boolean {
  const order = compareCursors(a, b);
  return order === null || order < 0;
}
