import { focusManager, type Query, type QueryClient } from "@tanstack/react-query";

import type { Update, UpdateEvent, UpdateType } from "./protocol.js";

/** What a query depends on: a whole update type, or only some keys of it. */
export type UpdateTag = UpdateType | { type: UpdateType; keys?: readonly (string | number)[] };

/** Put on a query as `meta: { updates: [...] }` to have it invalidated without any wrapper. */
export interface UpdatesMeta {
  updates?: UpdateTag | readonly UpdateTag[];
}

export interface QueryInvalidatorOptions {
  /** Updates arriving within this window share one invalidation pass. Default 25 ms. */
  coalesceMs?: number;
  logger?: Pick<Console, "warn" | "error">;
}

interface NormalTag {
  type: string;
  keys?: string[];
}

type AnyQuery = Query<unknown, unknown, unknown, readonly unknown[]>;
// The bound `refetch` of a QueryObserver: the one handle a useQuery() result gives on its query.
type ObserverRefetch = (...args: never[]) => unknown;

/**
 * Turns update events into TanStack Query invalidations, once per burst and without aborting
 * requests in flight.
 *
 * TanStack's `cancelRefetch: false` makes an invalidation join a fetch already running, and that
 * fetch's success clears the invalidated flag: the update would be lost. So a query that is
 * fetching when it gets invalidated is remembered and invalidated once more when that fetch
 * settles: exactly one more fetch, which sees the change.
 */
export class QueryInvalidator {
  readonly #client: QueryClient;
  /** Updates arriving within this window share one invalidation pass. */
  coalesceMs: number;
  readonly #logger: Pick<Console, "warn" | "error">;
  readonly #observerTags = new Map<ObserverRefetch, Set<NormalTag[]>>();
  // Queries that were fetching when invalidated: they get one more fetch when it settles.
  readonly #dirty = new Set<AnyQuery>();
  // Queries invalidated while the tab was hidden: refetched when it is visible again.
  readonly #deferred = new Set<AnyQuery>();

  #pending: Update[] = [];
  #pendingAll = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #unsubscribe: (() => void) | null = null;

  constructor(client: QueryClient, options: QueryInvalidatorOptions = {}) {
    this.#client = client;
    this.coalesceMs = options.coalesceMs ?? 25;
    this.#logger = options.logger ?? console;
  }

  /** Starts watching the cache and the tab's visibility; `stop()` undoes it. */
  start(): void {
    if (this.#unsubscribe) return;
    const offCache = this.#client.getQueryCache().subscribe((event) => {
      const query = event.query as AnyQuery;
      if (event.type === "removed") {
        this.#dirty.delete(query);
        this.#deferred.delete(query);
        return;
      }
      if (event.type === "updated" && query.state.fetchStatus === "idle" && this.#dirty.delete(query)) {
        // Out of the cache's dispatch before starting another fetch of the same query.
        queueMicrotask(() => this.#invalidate(new Set([query])));
      }
    });
    const offFocus = focusManager.subscribe((focused) => {
      if (focused) this.#refetchDeferred();
    });
    this.#unsubscribe = () => {
      offCache();
      offFocus();
    };
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending = [];
    this.#pendingAll = false;
    this.#dirty.clear();
    this.#deferred.clear();
    this.#unsubscribe?.();
    this.#unsubscribe = null;
  }

  handle(event: UpdateEvent): void {
    if (event.kind === "invalidate-all") this.#pendingAll = true;
    else this.#pending.push(...event.updates);
    // A window, not a debounce: a steady stream still gets a pass every coalesceMs.
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), this.coalesceMs);
    }
  }

  /** Declares that the query behind this observer `refetch` depends on these tags. */
  tagObserver(refetch: ObserverRefetch, tags: UpdateTag | readonly UpdateTag[]): () => void {
    const normal = normalizeTags(tags);
    let set = this.#observerTags.get(refetch);
    if (!set) {
      set = new Set();
      this.#observerTags.set(refetch, set);
    }
    set.add(normal);
    return () => {
      const current = this.#observerTags.get(refetch);
      current?.delete(normal);
      if (current?.size === 0) this.#observerTags.delete(refetch);
    };
  }

  /** Runs the pending invalidation pass now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const updates = this.#pending;
    const all = this.#pendingAll;
    this.#pending = [];
    this.#pendingAll = false;
    if (!all && updates.length === 0) return;
    const matched = new Set<AnyQuery>();
    for (const query of this.#client.getQueryCache().getAll() as AnyQuery[]) {
      const tags = this.tagsOf(query);
      if (tags.length === 0) continue;
      if (all || updates.some((update) => tags.some((tag) => tagMatches(tag, update)))) {
        matched.add(query);
      }
    }
    if (matched.size > 0) this.#invalidate(matched);
  }

  /** Every tag of a query: from its `meta.updates` and from useAutoRefetch on its observers. */
  tagsOf(query: AnyQuery): NormalTag[] {
    const tags: NormalTag[] = [];
    const meta = query.meta as UpdatesMeta | undefined;
    if (meta?.updates !== undefined) tags.push(...normalizeTags(meta.updates));
    for (const observer of query.observers) {
      const sets = this.#observerTags.get(observer.refetch as ObserverRefetch);
      if (sets) for (const set of sets) tags.push(...set);
    }
    return tags;
  }

  #invalidate(queries: Set<AnyQuery>): void {
    const visible = focusManager.isFocused();
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

function normalizeTags(tags: UpdateTag | readonly UpdateTag[]): NormalTag[] {
  const list: readonly UpdateTag[] = Array.isArray(tags) ? tags : [tags as UpdateTag];
  return list.map((tag) =>
    typeof tag === "string"
      ? { type: tag }
      : tag.keys === undefined
        ? { type: tag.type }
        : { type: tag.type, keys: tag.keys.map(String) },
  );
}

function tagMatches(tag: NormalTag, update: Update): boolean {
  if (tag.type !== update.type) return false;
  if (!update.keys || !tag.keys) return true;
  return update.keys.some((key) => tag.keys!.includes(key));
}
