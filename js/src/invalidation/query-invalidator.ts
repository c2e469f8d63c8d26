// The framework-free core: turns update events into invalidations of a @tanstack/query-core
// QueryClient. Which cached data the stream covers is coverage.ts's; this module follows the
// cache (tags, fetch ticks, fetches in flight) and invalidates. Every TanStack adapter is a thin
// layer over it; nothing here knows about a UI framework.
// Types only: the React entry must load without @tanstack/query-core being resolvable on its own
// (pnpm installs it under @tanstack/react-query), so each entry passes its own focusManager.
import type { Query, QueryCacheNotifyEvent, QueryClient } from "@tanstack/query-core";

import type { CursorTracker } from "../cursors.js";
import type { Update, UpdateEvent, UpdateSource } from "../protocol.js";
import { Subscribable } from "../subscribable.js";
import { Batch } from "./batch.js";
import { CursorCoverage } from "./coverage.js";
import { pageVisibility, type FocusManagerLike } from "./focus.js";
import type { TagsFromKey } from "./schema-tags.js";
import { OwnChanges } from "./own-changes.js";
import { normalizeTags, tagMatches, type NormalTag, type UpdateTag } from "./tags.js";
import { watchedOf, WatchTracker } from "./watching.js";
import type { Watched } from "../watch.js";

/**
 * Put on a query as `meta: { updates: [...] }` to have it invalidated without any wrapper. Register
 * it as TanStack's `queryMeta` so a typo is a type error (docs/js.md).
 *
 * A type alias, not an interface: TanStack only takes a registered `queryMeta` that
 * `extends Record<string, unknown>`, which an interface (no index signature) does not, and then it
 * silently falls back to an untyped meta.
 */
// eslint-disable-next-line @typescript-eslint/consistent-type-definitions
export type UpdatesMeta = {
  updates?: UpdateTag | readonly UpdateTag[];
};

export interface QueryInvalidatorOptions {
  /** Updates arriving within this window share one invalidation pass. Default 25 ms. */
  coalesceMs?: number;
  /**
   * How long the first connect waits for tagged queries in flight to report their cursor, in ms.
   * Only with a CursorTracker. Default 5000: the stream opens a little later, nothing is missed.
   */
  cursorWaitMs?: number;
  /**
   * How long a due invalidation pass waits for this client's pending mutations to settle, in ms.
   * The stream's frame for a change often arrives before the answer of the mutation that made it;
   * waiting lets the mutation's own `onSuccess` refetch go first, and the frame is then skipped for
   * what it read (docs/js.md, "The tab that made the change"). Default 1000; 0: never wait.
   */
  mutationWaitMs?: number;
  /**
   * TanStack's focusManager: the `query-invalidator` and `react` entries pass the one their
   * package exports, so `focusManager.setFocused()` in an app or a test reaches the invalidator too.
   */
  focusManager?: FocusManagerLike;
  logger?: Pick<Console, "warn" | "error">;
  /**
   * Tags for the queries that declare none (no `meta.updates`, no `useAutoRefetch`), derived from
   * their query key: `fromSchema(refetchTags)` (docs/js.md, "Tags from the schema").
   */
  tags?: TagsFromKey;
}

type AnyQuery = Query<unknown, unknown, unknown, readonly unknown[]>;
// The bound `refetch` of a QueryObserver: the one handle a query result gives on its observer.
type ObserverRefetch = (...args: never[]) => unknown;

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
 * - A frame is skipped for a query whose fetch started after the frame arrived, or after one of the
 *   app's own answers named a cursor the frame does not pass (`Refetch-Notified`, own-changes.ts):
 *   the tab that made a change fetches once, also when its `onSuccess` refetches. While one of the
 *   client's mutations is pending, a due pass waits for it (at most `mutationWaitMs`).
 */
export class QueryInvalidator {
  readonly #client: QueryClient;
  /** Updates arriving within this window share one invalidation pass. */
  coalesceMs: number;
  cursorWaitMs: number;
  mutationWaitMs: number;
  readonly #focus: FocusManagerLike;
  readonly #logger: Pick<Console, "warn" | "error">;
  readonly #batch: Batch<AnyQuery>;
  readonly #coverage: CursorCoverage;
  readonly #observerTags = new Map<ObserverRefetch, Set<NormalTag[]>>();
  // Tags that outlive the component that declared them; they go with the query.
  readonly #queryTags = new WeakMap<AnyQuery, Map<string, NormalTag[]>>();
  // What `tags` derived from each query's key (a query's key never changes).
  #derived = new WeakMap<AnyQuery, NormalTag[]>();
  #tagsFromKey: TagsFromKey | undefined;
  #warnedUnknown = false;
  // The tick at which each query's latest fetch started.
  readonly #fetchTicks = new WeakMap<AnyQuery, number>();
  // Queries that were fetching when invalidated: they get one more fetch when it settles ("always"),
  // or only if it fails ("unless-success": the fetch in flight was started after the change).
  readonly #dirty = new Map<AnyQuery, "always" | "unless-success">();
  // The app's own changes (`Refetch-Notified`), and what each query's latest fetch and its data
  // had been told of them when the fetch started.
  readonly #own = new OwnChanges();
  readonly #fetchNotified = new WeakMap<AnyQuery, string | null>();
  readonly #dataRead = new WeakMap<AnyQuery, { tick: number; notified: string | null }>();
  // The fetch clock when the latest frame arrived: a fetch with a later tick started after it.
  #arrived = 0;
  #offNotified: (() => void) | null = null;
  // Queries invalidated while the tab was hidden: refetched when it is visible again.
  readonly #deferred = new Set<AnyQuery>();
  // Told whenever a fetch settles or a query leaves the cache.
  readonly #settled: Subscribable;
  // The keys shown now (the tags of queries with observers), for the stream's `watch=`.
  readonly #shown: WatchTracker;

  #clock = 0;
  #offFocus: (() => void) | null = null;
  #watching = false;

  constructor(client: QueryClient, options: QueryInvalidatorOptions = {}) {
    this.#client = client;
    this.coalesceMs = options.coalesceMs ?? 25;
    this.#batch = new Batch(
      () => this.coalesceMs,
      (updates, all, matched, cursor) => this.#pass(updates, all, matched, cursor),
      () => this.#mutationsSettled(),
    );
    this.cursorWaitMs = options.cursorWaitMs ?? 5000;
    this.mutationWaitMs = options.mutationWaitMs ?? 1000;
    this.#focus = options.focusManager ?? pageVisibility;
    this.#logger = options.logger ?? console;
    this.#tagsFromKey = options.tags;
    this.#settled = new Subscribable(this.#logger);
    this.#shown = new WatchTracker(() => this.#watched(), this.#logger);
    this.#coverage = new CursorCoverage(
      () => this.#clock,
      (tick, running) => this.#suspect(tick, running),
    );
    this.#watch();
  }

  /** The cursor the next source starts from, once it is known (see `startCursor`). */
  get carriedCursor(): string | null {
    return this.#coverage.carried;
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
    this.#coverage.useCursors(cursors);
    this.#offNotified?.();
    this.#offNotified = cursors ? cursors.onNotified((cursor) => this.#own.note(cursor)) : null;
  }

  /**
   * Feeds this source's events into the invalidator and tracks what it covers. Returns the
   * disconnect; the source's last cursor is then carried to the next source.
   */
  connect(source: UpdateSource): () => void {
    this.start();
    const offEvents = source.subscribe((event) => this.handle(event));
    const detach = this.#coverage.attach(source);
    return () => {
      offEvents();
      detach();
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
    if (this.#coverage.fromReads) {
      // Queries started in the same render as the connect (`useSSEUpdates()` first in a page
      // component, its `useQuery`s after it) begin fetching in the effects that run right after
      // the connect's own, in the same synchronous flush: let them start, then wait for them.
      await Promise.resolve();
      await this.#taggedFetchesSettled(this.cursorWaitMs);
    }
    return this.#coverage.handOut();
  }

  handle(event: UpdateEvent): void {
    this.#arrived = this.#clock;
    this.#batch.add(event);
  }

  /**
   * Per update type, the keys the queries shown now (with an observer) are tagged with, or "all"
   * when one of them is tagged with the whole type: what the stream sends as `watch=`.
   */
  watched(): Watched {
    return this.#shown.current();
  }

  /** Calls back (once per microtask at most) when `watched()` changed; returns the unsubscribe. */
  onWatched(listener: (watched: Watched) => void): () => void {
    this.#watch();
    return this.#shown.subscribe(listener);
  }

  #watched(): Watched {
    const shown: NormalTag[][] = [];
    for (const query of this.#queries()) if (query.observers.length > 0) shown.push(this.tagsOf(query));
    return watchedOf(shown);
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
    this.#shown.changed();
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
    if (!map.has(key)) {
      map.set(key, normal);
      this.#shown.changed();
    }
  }

  /** Runs the pending invalidation pass now. */
  flush(): void {
    this.#batch.flush();
  }

  /** Derives the tags of the queries that declare none from their key (the `tags` option). */
  useTags(tags: TagsFromKey | undefined): void {
    if (tags === this.#tagsFromKey) return;
    this.#tagsFromKey = tags;
    this.#derived = new WeakMap();
  }

  /**
   * Every tag of a query: from its `meta.updates` and from `tagObserver`/`tagQuery`; when it
   * declares none, the ones `tags` derives from its query key.
   */
  tagsOf(query: Query<any, any, any, any>): NormalTag[] {
    const tags: NormalTag[] = [];
    const meta = query.meta as UpdatesMeta | undefined;
    if (meta?.updates !== undefined) tags.push(...normalizeTags(meta.updates));
    const map = this.#queryTags.get(query as AnyQuery);
    if (map) for (const list of map.values()) tags.push(...list);
    // Declared (even `meta: { updates: [] }`: "depends on nothing") beats derived.
    const declared = meta?.updates !== undefined || (map !== undefined && map.size > 0);
    return declared || !this.#tagsFromKey ? tags : this.#derive(query as AnyQuery, this.#tagsFromKey);
  }

  #derive(query: AnyQuery, tagsFromKey: TagsFromKey): NormalTag[] {
    let tags = this.#derived.get(query);
    if (tags) return tags;
    const derived = tagsFromKey(query.queryKey);
    if (derived === null && !this.#warnedUnknown) {
      this.#warnedUnknown = true;
      this.#logger.warn(
        "refetch: a query key names an operation the schema tags do not know, so it is not refetched on updates; " +
          "regenerate them with `refetch tags` (first such key: " + JSON.stringify(query.queryKey) + ")",
      );
    }
    tags = derived ? normalizeTags(derived) : [];
    this.#derived.set(query, tags);
    return tags;
  }

  /**
   * `matched`: the queries that join this pass whatever the updates say. `cursor`: the newest id
   * of the frames in it. A query that read after them is left alone (`#hasSeen`).
   */
  #pass(updates: Update[], all: boolean, matched: Set<AnyQuery>, cursor: string | null): void {
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
      if (all) matched.add(query);
      else if (updates.some((update) => tags.some((tag) => tagMatches(tag, update))) && !this.#hasSeen(query, cursor)) {
        matched.add(query);
      }
    }
    if (matched.size > 0) this.#invalidate(matched);
    this.#own.handled(cursor);
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
      case "observerRemoved":
      case "observerOptionsUpdated":
        this.#shown.changed();
        return;
      case "removed":
        this.#shown.changed();
        this.#dirty.delete(query);
        this.#deferred.delete(query);
        this.#settled.notify();
        return;
      case "observerAdded": {
        const sets = this.#observerTags.get(event.observer.refetch as ObserverRefetch);
        if (sets) for (const tags of sets) this.tagQuery(query, tags);
        this.#shown.changed();
        return;
      }
      case "updated": {
        const action = event.action;
        if (action.type === "fetch") {
          this.#fetchTicks.set(query, ++this.#clock);
          this.#fetchNotified.set(query, this.#own.latest);
        } else if (action.type === "success") {
          // Data the app put there itself (setQueryData): nobody knows when it was read.
          if (action.manual) this.#dataRead.delete(query);
          else {
            const tick = this.#fetchTicks.get(query);
            if (tick === undefined) this.#dataRead.delete(query);
            else this.#dataRead.set(query, { tick, notified: this.#fetchNotified.get(query) ?? null });
          }
        }
        if (query.state.fetchStatus !== "idle") return;
        const dirty = this.#dirty.get(query);
        if (dirty !== undefined) {
          this.#dirty.delete(query);
          // Out of the cache's dispatch before starting another fetch of the same query.
          if (dirty === "always" || action.type !== "success") queueMicrotask(() => this.#invalidate(new Set([query])));
        }
        this.#settled.notify();
        return;
      }
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
        off();
        resolve();
      };
      const off = this.#settled.subscribe(() => {
        if (!busy()) done();
      });
      const timer = setTimeout(done, limitMs);
    });
  }

  /**
   * The query's data, or the fetch it has in flight, was read after every change of this pass:
   * its fetch started after the pass's frames arrived (a change is notified after its commit), or
   * after one of the app's own answers named a cursor the frames do not pass (`OwnChanges`). Then
   * nothing to refetch; a fetch in flight is held to it: if it fails, one more fetch.
   */
  #hasSeen(query: AnyQuery, cursor: string | null): boolean {
    if (query.state.fetchStatus === "idle") {
      const read = this.#dataRead.get(query);
      return read !== undefined && (read.tick > this.#arrived || this.#own.seen(read.notified, cursor));
    }
    const tick = this.#fetchTicks.get(query);
    if (tick === undefined) return false;
    if (tick <= this.#arrived && !this.#own.seen(this.#fetchNotified.get(query), cursor)) return false;
    if (!this.#dirty.has(query)) this.#dirty.set(query, "unless-success");
    return true;
  }

  /** While a mutation of this client is pending, a due pass waits for it (at most `mutationWaitMs`). */
  #mutationsSettled(): Promise<void> | null {
    if (this.mutationWaitMs <= 0 || this.#client.isMutating() === 0) return null;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        off();
        resolve();
      };
      const off = this.#client.getMutationCache().subscribe(() => {
        if (this.#client.isMutating() === 0) done();
      });
      const timer = setTimeout(done, this.mutationWaitMs);
    });
  }

  /** Data fetched up to `tick` may miss changes: one more fetch for each tagged query of it. */
  #suspect(tick: number, running: boolean): void {
    for (const query of this.#queries()) {
      if (running && query.state.fetchStatus === "idle") continue;
      const started = this.#fetchTicks.get(query);
      // A query fetched before this invalidator watched the cache has no tick: it predates anything.
      const before =
        started === undefined ? query.state.dataUpdatedAt > 0 || query.state.fetchStatus !== "idle" : started <= tick;
      // In the next pass, so an update that comes with the hello costs no second fetch.
      if (before && this.tagsOf(query).length > 0) this.#batch.include(query);
    }
  }

  // -- invalidation -----------------------------------------------------------------

  #invalidate(queries: Set<AnyQuery>): void {
    const visible = this.#focus.isFocused();
    for (const query of queries) {
      if (query.state.fetchStatus !== "idle") this.#dirty.set(query, "always");
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
