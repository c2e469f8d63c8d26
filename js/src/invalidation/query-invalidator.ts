// The framework-free core: turns update events into invalidations of a @tanstack/query-core
// QueryClient, and keeps track of which cursor the cached data is covered from. Every adapter
// (React today) is a thin layer over this module; nothing here knows about a UI framework.
// Types only: the React entry must load without @tanstack/query-core being resolvable on its own
// (pnpm installs it under @tanstack/react-query), so each entry passes its own focusManager.
import type { Query, QueryCacheNotifyEvent, QueryClient } from "@tanstack/query-core";

import { addCursor, compareCursors, NO_CURSORS, type CursorSummary, type CursorTracker } from "../cursors.js";
import type { StreamStatus, Update, UpdateEvent, UpdateSource, UpdateType } from "../protocol.js";

/** What a query depends on: a whole update type, or only some keys of it. */
export type UpdateTag = UpdateType | { type: UpdateType; keys?: readonly (string | number)[] };

/**
 * Put on a query as `meta: { updates: [...] }` to have it invalidated without any wrapper. Register
 * it as TanStack's `queryMeta` so a typo is a type error (docs/js.md).
 */
export interface UpdatesMeta {
  updates?: UpdateTag | readonly UpdateTag[];
}

/** The part of TanStack's focusManager the invalidator uses; an adapter passes its own copy. */
export interface FocusManagerLike {
  isFocused(): boolean;
  subscribe(listener: (focused: boolean) => void): () => void;
}

export interface QueryInvalidatorOptions {
  /** Updates arriving within this window share one invalidation pass. Default 25 ms. */
  coalesceMs?: number;
  /**
   * How long the first connect waits for tagged queries in flight to report their cursor, in ms.
   * Only with a CursorTracker. Default 5000: the stream opens a little later, nothing is missed.
   */
  cursorWaitMs?: number;
  /**
   * TanStack's focusManager: the `query-core` and `react` entries pass the one their package
   * exports, so `focusManager.setFocused()` in an app or a test reaches the invalidator too.
   */
  focusManager?: FocusManagerLike;
  logger?: Pick<Console, "warn" | "error">;
}

export interface NormalTag {
  type: string;
  keys?: string[];
}

type AnyQuery = Query<unknown, unknown, unknown, readonly unknown[]>;
// The bound `refetch` of a QueryObserver: the one handle a query result gives on its observer.
type ObserverRefetch = (...args: never[]) => unknown;

/** From which cursor the attached source delivers everything, and since which fetch. */
interface Coverage {
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

/**
 * Turns update events into TanStack Query invalidations, once per burst and without aborting
 * requests in flight, and closes the windows in which a client could show stale data:
 *
 * - TanStack's `cancelRefetch: false` makes an invalidation join a fetch already running, and that
 *   fetch's success clears the invalidated flag: the update would be lost. So a query that is
 *   fetching when it gets invalidated is remembered and invalidated once more when that fetch
 *   settles: exactly one more fetch, which sees the change.
 * - Tags given through `tagObserver` (useAutoRefetch) are copied onto the query, so they stay
 *   until the query leaves the cache, also while no component shows it.
 * - Data read before the stream was open is covered by starting the stream from the oldest
 *   `Refetch-Cursor` it was read at (`startCursor`), or from the previous stream's cursor; without
 *   either, the tagged queries fetched before the stream opened are invalidated once.
 */
export class QueryInvalidator {
  readonly #client: QueryClient;
  /** Updates arriving within this window share one invalidation pass. */
  coalesceMs: number;
  cursorWaitMs: number;
  readonly #focus: FocusManagerLike;
  readonly #logger: Pick<Console, "warn" | "error">;
  readonly #observerTags = new Map<ObserverRefetch, Set<NormalTag[]>>();
  // Tags that outlive the component that declared them; they go with the query.
  readonly #queryTags = new WeakMap<AnyQuery, Map<string, NormalTag[]>>();
  // The tick at which each query's latest fetch started.
  readonly #fetchTicks = new WeakMap<AnyQuery, number>();
  // Queries that were fetching when invalidated: they get one more fetch when it settles.
  readonly #dirty = new Set<AnyQuery>();
  // Queries invalidated while the tab was hidden: refetched when it is visible again.
  readonly #deferred = new Set<AnyQuery>();
  readonly #settleWaiters = new Set<() => void>();

  #clock = 0;
  #pending: Update[] = [];
  #pendingAll = false;
  // Queries a coverage gap left unsure of; they join the next pass.
  #pendingGap = new Set<AnyQuery>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #offFocus: (() => void) | null = null;
  #watching = false;

  #cursors: CursorTracker | null = null;
  #offCursors: (() => void) | null = null;
  // Cursors noted while no source covered them; judged when the next one opens.
  #uncovered: CursorSummary = NO_CURSORS;
  #coverage: Coverage | null = null;
  // The last cursor of a source that went away: the next source starts from it.
  #carry: string | null = null;
  // The `judge` of the last coverage: where its unbroken chain of sources began.
  #chain: string | null = null;
  // What startCursor() handed to the source being connected (undefined: it did not ask).
  #handedOut: string | null | undefined = undefined;

  constructor(client: QueryClient, options: QueryInvalidatorOptions = {}) {
    this.#client = client;
    this.coalesceMs = options.coalesceMs ?? 25;
    this.cursorWaitMs = options.cursorWaitMs ?? 5000;
    this.#focus = options.focusManager ?? pageVisibility;
    this.#logger = options.logger ?? console;
    this.#watch();
  }

  /** The cursor the next source starts from, once it is known (see `startCursor`). */
  get carriedCursor(): string | null {
    return this.#carry;
  }

  /** Starts watching the tab's visibility, for the queries invalidated while it was hidden. */
  start(): void {
    this.#watch();
    if (this.#offFocus) return;
    this.#offFocus = this.#focus.subscribe((focused) => {
      if (focused) this.#refetchDeferred();
    });
  }

  /**
   * Runs the pending pass now. Everything else goes on: updates already received are applied (the
   * carried cursor says they were), and queries already invalidated still get their one more fetch
   * or their refetch when the tab is visible again. Tags and the carried cursor stay.
   */
  stop(): void {
    this.flush();
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
   * Feeds this source's events into the invalidator and tracks what it covers. Returns the
   * disconnect; the source's last cursor is then carried to the next source.
   */
  connect(source: UpdateSource): () => void {
    this.start();
    if (this.#coverage && this.#coverage.source !== source) this.#uncover();
    this.#coverage = { source, base: null, judge: null, tick: Infinity };
    const offEvents = source.subscribe((event) => this.handle(event));
    const offStatus = source.onStatus((status) => this.#status(source, status));
    this.#status(source, source.status);
    return () => {
      offEvents();
      offStatus();
      if (this.#coverage?.source === source) this.#uncover();
      this.stop();
    };
  }

  /**
   * The cursor a source should start from when it has none of its own (pass it as the stream's
   * `cursor` option): the previous source's cursor; else, with a CursorTracker, the oldest cursor
   * of the data read so far, once the tagged queries in flight have answered (at most
   * `cursorWaitMs`); else null (the source starts fresh and the queries fetched before it opened
   * are invalidated once).
   */
  async startCursor(): Promise<string | null> {
    if (this.#carry === null && this.#cursors) await this.#taggedFetchesSettled(this.cursorWaitMs);
    const cursor = this.#carry ?? (this.#uncovered.mixed ? null : this.#uncovered.oldest);
    this.#handedOut = cursor;
    return cursor;
  }

  handle(event: UpdateEvent): void {
    if (event.kind === "invalidate-all") this.#pendingAll = true;
    else this.#pending.push(...event.updates);
    this.#schedule();
  }

  #schedule(): void {
    // A window, not a debounce: a steady stream still gets a pass every coalesceMs.
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), this.coalesceMs);
    }
  }

  /**
   * Declares that the query behind this observer `refetch` depends on these tags. The tags are
   * copied onto the query (now, and whenever the observer moves to another query) and stay there
   * until the query leaves the cache; the returned function only stops that copying.
   */
  tagObserver(refetch: ObserverRefetch, tags: UpdateTag | readonly UpdateTag[]): () => void {
    this.#watch();
    const normal = normalizeTags(tags);
    let set = this.#observerTags.get(refetch);
    if (!set) {
      set = new Set();
      this.#observerTags.set(refetch, set);
    }
    set.add(normal);
    for (const query of this.#queries()) {
      if (query.observers.some((observer) => observer.refetch === refetch)) this.tagQuery(query, normal);
    }
    return () => {
      const current = this.#observerTags.get(refetch);
      current?.delete(normal);
      if (current?.size === 0) this.#observerTags.delete(refetch);
    };
  }

  /** Tags a query in the cache until it leaves the cache. */
  tagQuery(query: Query<any, any, any, any>, tags: UpdateTag | readonly UpdateTag[]): void {
    const normal = normalizeTags(tags);
    const key = JSON.stringify(normal);
    let map = this.#queryTags.get(query as AnyQuery);
    if (!map) {
      map = new Map();
      this.#queryTags.set(query as AnyQuery, map);
    }
    if (!map.has(key)) map.set(key, normal);
  }

  /** Runs the pending invalidation pass now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const updates = this.#pending;
    const all = this.#pendingAll;
    const matched = this.#pendingGap;
    this.#pending = [];
    this.#pendingAll = false;
    this.#pendingGap = new Set();
    if (matched.size > 0) {
      const cached = new Set<unknown>(this.#queries());
      for (const query of matched) if (!cached.has(query)) matched.delete(query);
    }
    if (!all && updates.length === 0) {
      if (matched.size > 0) this.#invalidate(matched);
      return;
    }
    for (const query of this.#queries()) {
      const tags = this.tagsOf(query);
      if (tags.length === 0) continue;
      if (all || updates.some((update) => tags.some((tag) => tagMatches(tag, update)))) {
        matched.add(query);
      }
    }
    if (matched.size > 0) this.#invalidate(matched);
  }

  /** Every tag of a query: from its `meta.updates` and from `tagObserver`/`tagQuery`. */
  tagsOf(query: Query<any, any, any, any>): NormalTag[] {
    const tags: NormalTag[] = [];
    const meta = query.meta as UpdatesMeta | undefined;
    if (meta?.updates !== undefined) tags.push(...normalizeTags(meta.updates));
    const map = this.#queryTags.get(query as AnyQuery);
    if (map) for (const list of map.values()) tags.push(...list);
    return tags;
  }

  // -- the cache --------------------------------------------------------------------

  #queries(): AnyQuery[] {
    return this.#client.getQueryCache().getAll() as AnyQuery[];
  }

  #watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    // For the client's lifetime: tags and fetch ticks must be kept also while no stream runs.
    this.#client.getQueryCache().subscribe((event) => this.#cacheEvent(event));
  }

  #cacheEvent(event: QueryCacheNotifyEvent): void {
    const query = event.query as AnyQuery;
    switch (event.type) {
      case "removed":
        this.#dirty.delete(query);
        this.#deferred.delete(query);
        if (this.#settleWaiters.size > 0) for (const wake of [...this.#settleWaiters]) wake();
        return;
      case "observerAdded": {
        const sets = this.#observerTags.get(event.observer.refetch as ObserverRefetch);
        if (sets) for (const tags of sets) this.tagQuery(query, tags);
        return;
      }
      case "updated":
        if (event.action.type === "fetch") this.#fetchTicks.set(query, ++this.#clock);
        if (query.state.fetchStatus !== "idle") return;
        if (this.#dirty.delete(query)) {
          // Out of the cache's dispatch before starting another fetch of the same query.
          queueMicrotask(() => this.#invalidate(new Set([query])));
        }
        if (this.#settleWaiters.size > 0) for (const wake of [...this.#settleWaiters]) wake();
        return;
      default:
        return;
    }
  }

  #taggedFetchesSettled(limitMs: number): Promise<void> {
    const busy = () =>
      this.#queries().some((query) => query.state.fetchStatus === "fetching" && this.tagsOf(query).length > 0);
    if (!busy()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#settleWaiters.delete(check);
        resolve();
      };
      const check = () => {
        if (!busy()) done();
      };
      const timer = setTimeout(done, limitMs);
      this.#settleWaiters.add(check);
    });
  }

  // -- coverage ---------------------------------------------------------------------

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
    coverage.tick = this.#clock;
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
      this.#gap(coverage.tick);
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
    if (isOlder(cursor, coverage.judge)) this.#gap(coverage.tick, true);
  }

  #uncover(): void {
    const coverage = this.#coverage;
    this.#coverage = null;
    this.#handedOut = undefined;
    if (coverage && coverage.base !== null) this.#carry = coverage.source.cursor ?? coverage.base;
  }

  /** Data fetched up to `tick` may miss changes: one more fetch for each tagged query of it. */
  #gap(tick: number, fetchingOnly = false): void {
    let any = false;
    for (const query of this.#queries()) {
      if (fetchingOnly && query.state.fetchStatus === "idle") continue;
      const started = this.#fetchTicks.get(query);
      // A query fetched before this invalidator watched the cache has no tick: it predates anything.
      const before =
        started === undefined ? query.state.dataUpdatedAt > 0 || query.state.fetchStatus !== "idle" : started <= tick;
      if (before && this.tagsOf(query).length > 0) {
        this.#pendingGap.add(query);
        any = true;
      }
    }
    // In the next pass, so an update that comes with the hello costs no second fetch.
    if (any) this.#schedule();
  }

  // -- invalidation -----------------------------------------------------------------

  #invalidate(queries: Set<AnyQuery>): void {
    const visible = this.#focus.isFocused();
    for (const query of queries) {
      if (query.state.fetchStatus !== "idle") this.#dirty.add(query);
      if (!visible) this.#deferred.add(query);
    }
    this.#client
      .invalidateQueries(
        { predicate: (query) => queries.has(query as AnyQuery), refetchType: visible ? "active" : "none" },
        { cancelRefetch: false },
      )
      .catch((error: unknown) => this.#logger.error("refetch: invalidation failed", error));
  }

  #refetchDeferred(): void {
    const queries = new Set([...this.#deferred].filter((query) => query.isStale()));
    this.#deferred.clear();
    if (queries.size === 0) return;
    // Joins a fetch that TanStack's own focus refetch may have started a moment ago.
    this.#client
      .refetchQueries({ predicate: (query) => queries.has(query as AnyQuery), type: "active" }, { cancelRefetch: false })
      .catch((error: unknown) => this.#logger.error("refetch: refetch failed", error));
  }
}

/** Used only when no focusManager is passed: the page's visibility, as TanStack's default reads it. */
export const pageVisibility: FocusManagerLike = {
  isFocused: () => (globalThis as { document?: Document }).document?.visibilityState !== "hidden",
  subscribe(listener) {
    const doc = (globalThis as { document?: Document }).document;
    if (!doc) return () => {};
    const onChange = () => listener(doc.visibilityState !== "hidden");
    doc.addEventListener("visibilitychange", onChange);
    return () => doc.removeEventListener("visibilitychange", onChange);
  },
};

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

export function normalizeTags(tags: UpdateTag | readonly UpdateTag[]): NormalTag[] {
  const list: readonly UpdateTag[] = Array.isArray(tags) ? tags : [tags as UpdateTag];
  return list.map((tag) =>
    typeof tag === "string"
      ? { type: tag }
      : tag.keys === undefined
        ? { type: tag.type }
        : { type: tag.type, keys: tag.keys.map(String) },
  );
}

export function tagMatches(tag: NormalTag, update: Update): boolean {
  if (tag.type !== update.type) return false;
  if (!update.keys || !tag.keys) return true;
  return update.keys.some((key) => tag.keys!.includes(key));
}
