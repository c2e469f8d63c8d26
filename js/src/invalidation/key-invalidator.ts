// The invalidator for caches that know keys, not queries (SWR): the same promises as the
// TanStack core (one pass per burst, nothing started twice, exactly one more fetch for an update
// that lands mid-fetch, hidden-tab deferral, resync, inactive keys marked stale), kept by
// following each key's fetches and mounts, since such a cache tells nobody about them.
import type { StreamStatus, Update, UpdateEvent, UpdateSource } from "../protocol.js";
import { Batch } from "./batch.js";
import { pageVisibility, type FocusManagerLike } from "./focus.js";
import { normalizeTags, tagMatches, type NormalTag, type UpdateTag } from "./tags.js";
import { watchedOf, WatchTracker } from "./watching.js";
import type { Watched } from "../watch.js";

export interface KeyInvalidatorOptions {
  /** Updates arriving within this window share one invalidation pass. Default 25 ms. */
  coalesceMs?: number;
  /** When the tab is hidden, keys are only marked and revalidated once it is visible. Default: the page's visibility. */
  focusManager?: FocusManagerLike;
  logger?: Pick<Console, "warn" | "error">;
}

/** Revalidates these (serialized) keys, resolving when their revalidation is done. */
export type Revalidate = (keys: ReadonlySet<string>) => Promise<unknown>;

interface KeyState {
  tags: Map<string, NormalTag[]>;
  mounts: number;
  fetching: number;
  /** A revalidation was asked for and has not finished (its fetch may not have started yet). */
  requested: boolean;
  /** Got an update while fetching: revalidated once more when the fetch settles. */
  dirty: boolean;
  /** Got an update while no component showed it (or the tab was hidden), at this tick. */
  staleAt: number | null;
  /** The tick of its latest fetch start. */
  fetchedAt: number;
}

export class KeyInvalidator {
  /** Updates arriving within this window share one invalidation pass. */
  coalesceMs: number;
  readonly #revalidate: Revalidate;
  readonly #focus: FocusManagerLike;
  readonly #logger: Pick<Console, "warn" | "error">;
  readonly #batch: Batch<string>;
  readonly #keys = new Map<string, KeyState>();
  #clock = 0;
  #offFocus: (() => void) | null = null;
  #source: UpdateSource | null = null;
  // The last cursor of a source that went away: the next source starts from it.
  #carry: string | null = null;
  // The keys shown now (the tags of mounted keys), for the stream's `watch=`.
  readonly #watching: WatchTracker;

  constructor(revalidate: Revalidate, options: KeyInvalidatorOptions = {}) {
    this.#revalidate = revalidate;
    this.coalesceMs = options.coalesceMs ?? 25;
    this.#batch = new Batch(
      () => this.coalesceMs,
      (updates, all, matched) => this.#pass(updates, all, matched),
    );
    this.#focus = options.focusManager ?? pageVisibility;
    this.#logger = options.logger ?? console;
    this.#watching = new WatchTracker(
      () => watchedOf([...this.#keys.values()].filter((state) => state.mounts > 0).map((state) => [...state.tags.values()].flat())),
      this.#logger,
    );
  }

  /** Per update type, the keys the mounted keys are tagged with, or "all": the stream's `watch=`. */
  watched(): Watched {
    return this.#watching.current();
  }

  /** Calls back (once per microtask at most) when `watched()` changed; returns the unsubscribe. */
  onWatched(listener: (watched: Watched) => void): () => void {
    return this.#watching.subscribe(listener);
  }

  /** The cursor the next source should start from (the previous source's last one), or null. */
  startCursor(): string | null {
    return this.#carry;
  }

  /** Declares that this key depends on these tags, for as long as this invalidator lives. */
  tag(key: string, tags: UpdateTag | readonly UpdateTag[]): void {
    const normal = normalizeTags(tags);
    const state = this.#state(key);
    const signature = JSON.stringify(normal);
    if (!state.tags.has(signature)) {
      state.tags.set(signature, normal);
      this.#watching.changed();
    }
  }

  /** Runs one fetch of this key and follows it: `fetcher` wrapped by the key's tagging helper. */
  track<T>(key: string, run: () => T | Promise<T>): Promise<T> {
    const state = this.#state(key);
    state.fetching++;
    state.fetchedAt = ++this.#clock;
    const settled = () => {
      state.fetching--;
      this.#settled(key, state);
    };
    return Promise.resolve()
      .then(run)
      .finally(settled);
  }

  /** A component shows this key; returns its unmount. A key marked stale meanwhile is revalidated now. */
  mounted(key: string): () => void {
    const state = this.#state(key);
    state.mounts++;
    this.#watching.changed();
    if (state.staleAt !== null && this.#focus.isFocused()) {
      const fresh = state.fetchedAt > state.staleAt;
      state.staleAt = null;
      // Through #invalidate: a fetch may still be in flight (one that outlived its last component).
      if (!fresh) this.#invalidate(new Set([key]));
    }
    return () => {
      state.mounts--;
      this.#watching.changed();
    };
  }

  /** Feeds this source's events in; returns the disconnect (the source's cursor carries to the next). */
  connect(source: UpdateSource): () => void {
    this.#start();
    this.#source = source;
    // Set once this source opened fresh; fetches started before it may have missed changes.
    let opened = false;
    const startedFrom = this.#carry;
    const offEvents = source.subscribe((event) => this.handle(event));
    const onStatus = (status: StreamStatus) => {
      if (status !== "open" || opened) return;
      opened = true;
      // Resumed from the previous source: it replays what changed. Otherwise nothing says when
      // the cached data was read, so every tagged key fetched before this hello is refetched once.
      if (startedFrom === null) this.#gap(this.#clock);
    };
    const offStatus = source.onStatus(onStatus);
    onStatus(source.status);
    return () => {
      offEvents();
      offStatus();
      if (this.#source === source) {
        this.#source = null;
        if (opened) this.#carry = source.cursor ?? this.#carry;
      }
      this.flush();
    };
  }

  handle(event: UpdateEvent): void {
    this.#batch.add(event);
  }

  /** Runs the pending pass now. */
  flush(): void {
    this.#batch.flush();
  }

  /** `matched`: the keys that join this pass whatever the updates say. */
  #pass(updates: Update[], all: boolean, matched: Set<string>): void {
    if (all || updates.length > 0) {
      for (const [key, state] of this.#keys) {
        if (state.tags.size === 0) continue;
        const tags = [...state.tags.values()].flat();
        if (all || updates.some((update) => tags.some((tag) => tagMatches(tag, update)))) matched.add(key);
      }
    }
    if (matched.size > 0) this.#invalidate(matched);
  }

  #state(key: string): KeyState {
    let state = this.#keys.get(key);
    if (!state) {
      state = { tags: new Map(), mounts: 0, fetching: 0, requested: false, dirty: false, staleAt: null, fetchedAt: 0 };
      this.#keys.set(key, state);
    }
    return state;
  }

  #start(): void {
    if (this.#offFocus) return;
    this.#offFocus = this.#focus.subscribe((focused) => {
      if (!focused) return;
      const due = new Set<string>();
      for (const [key, state] of this.#keys) {
        if (state.staleAt !== null && state.mounts > 0) due.add(key);
      }
      if (due.size > 0) this.#invalidate(due);
    });
  }

  #invalidate(keys: Set<string>): void {
    const visible = this.#focus.isFocused();
    const now = new Set<string>();
    for (const key of keys) {
      const state = this.#state(key);
      if (state.mounts === 0 || !visible) {
        // Nobody shows it (or nobody sees it): revalidated when shown (or visible) again.
        state.staleAt ??= this.#clock;
      } else if (state.fetching > 0 || state.requested) {
        // Starting another fetch now would race the one in flight; one more after it instead.
        state.dirty = true;
      } else {
        state.staleAt = null;
        now.add(key);
      }
    }
    if (now.size > 0) this.#run(now);
  }

  #run(keys: Set<string>): void {
    for (const key of keys) this.#state(key).requested = true;
    this.#revalidate(keys)
      .catch((error: unknown) => this.#logger.error("refetch: revalidation failed", error))
      .finally(() => {
        for (const key of keys) {
          const state = this.#state(key);
          state.requested = false;
          this.#settled(key, state);
        }
      });
  }

  #settled(key: string, state: KeyState): void {
    if (state.fetching > 0 || state.requested || !state.dirty) return;
    state.dirty = false;
    this.#batch.include(key);
  }

  /** Keys fetched up to `tick` may miss changes: one more fetch for each tagged one, in the next pass. */
  #gap(tick: number): void {
    for (const [key, state] of this.#keys) {
      if (state.tags.size > 0 && state.fetchedAt > 0 && state.fetchedAt <= tick) this.#batch.include(key);
    }
  }
}
