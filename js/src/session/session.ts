// One cache kept fresh by one update stream: opens the stream (or attaches one), feeds it to the
// cache's invalidator, and offers what every framework adapter needs beyond that (the current
// source, its status and frame log, for a UI). The same for TanStack (QueryUpdates) and SWR
// (SWRUpdates); they differ only in their invalidator. No framework here.
import type { CursorTracker } from "../cursors.js";
import type { TagsFromKey } from "../invalidation/schema-tags.js";
import type { FrameLogEntry, StreamStatus, UpdateSource } from "../protocol.js";
import { createUpdateStream, type CreateUpdateStreamOptions } from "../stream/shared.js";
import { Subscribable } from "../subscribable.js";
import { followSignIn } from "./sign-in.js";
import type { Watched } from "../watch.js";

export interface ConnectOptions extends Partial<CreateUpdateStreamOptions> {
  /** Default "/api/updates". */
  url?: string | URL;
  /** Use this stream instead of creating one; it is started but not closed on disconnect. */
  stream?: UpdateSource;
  /** Updates arriving within this window share one invalidation pass. Default 25 ms. */
  coalesceMs?: number;
  /** The `Refetch-Cursor`s of the app's API responses: the stream starts from the oldest. */
  cursors?: CursorTracker | null;
  /** Tags for the queries that declare none, from their key: `fromSchema(refetchTags)` (TanStack caches). */
  tags?: TagsFromKey;
}

/** What the session needs of an invalidator (QueryInvalidator, KeyInvalidator). */
export interface SessionInvalidator {
  coalesceMs: number;
  /** The cursor a stream that has none of its own starts from. */
  startCursor(): string | null | Promise<string | null>;
  /** Feeds the source's events in; returns the disconnect. */
  connect(source: UpdateSource): () => void;
  /** Only an invalidator whose cache can say what each response was read at. */
  useCursors?(cursors: CursorTracker | null): void;
  /** The keys shown now, per type, for the stream's `watch=` (watch.ts). */
  watched?(): Watched;
  onWatched?(listener: (watched: Watched) => void): () => void;
  /** Only an invalidator that sees each query's key (TanStack). */
  useTags?(tags: TagsFromKey | undefined): void;
}

export class UpdatesSession<I extends SessionInvalidator> {
  readonly invalidator: I;
  readonly #logger: Pick<Console, "warn" | "error">;
  readonly #cache: string;
  readonly #changes: Subscribable;
  readonly #appSucceeded: ((listener: () => void) => () => void) | undefined;
  #source: UpdateSource | null = null;
  #log: readonly FrameLogEntry[] = EMPTY;

  /**
   * `cache` names what the session keeps fresh, for the misuse warning ("QueryClient", "SWR cache").
   * `appSucceeded` tells when one of the app's own requests succeeded: a stream answered 401 is
   * then tried again (sign-in.ts).
   */
  constructor(
    invalidator: I,
    cache: string,
    logger: Pick<Console, "warn" | "error"> = console,
    appSucceeded?: (listener: () => void) => () => void,
  ) {
    this.invalidator = invalidator;
    this.#appSucceeded = appSucceeded;
    this.#logger = logger;
    this.#cache = cache;
    this.#changes = new Subscribable(this.#logger);
  }

  /** The attached stream, or null. */
  get source(): UpdateSource | null {
    return this.#source;
  }

  /** The stream's status: "closed" while none is attached. */
  get status(): StreamStatus {
    return this.#source?.status ?? "closed";
  }

  /** The recent frames, oldest first; a new array on every change (for snapshot-based UIs). */
  get log(): readonly FrameLogEntry[] {
    return this.#log;
  }

  /** Called on every change of source, status or log. A bound property, for useSyncExternalStore. */
  subscribe = (listener: () => void): (() => void) => {
    return this.#changes.subscribe(listener);
  };

  /**
   * Opens the update stream (or attaches `options.stream`) and invalidates the cache from it.
   * Returns the disconnect, which closes a stream it created; the stream's cursor is carried to
   * the next `connect()`, so changes made in between are replayed, not lost.
   */
  connect(options: ConnectOptions = {}): () => void {
    const { stream, coalesceMs, cursors, tags, ...streamOptions } = options;
    const invalidator = this.invalidator;
    if (cursors !== undefined) invalidator.useCursors?.(cursors);
    if (tags !== undefined) {
      if (invalidator.useTags) invalidator.useTags(tags);
      else this.#logger.warn(`refetch: \`tags\` work with TanStack Query caches, not with an ${this.#cache}; it is ignored`);
    }
    const source =
      stream ??
      createUpdateStream({
        ...streamOptions,
        url: options.url ?? "/api/updates",
        cursor: options.cursor ?? (() => invalidator.startCursor()),
        watched: invalidator.watched?.(),
      });
    const detach = this.#attach(source, coalesceMs);
    source.start();
    return () => {
      detach();
      if (!stream) source.close();
    };
  }

  #attach(source: UpdateSource, coalesceMs: number | undefined): () => void {
    if (this.#source && this.#source !== source) {
      this.#logger.warn(`refetch: two update streams for one ${this.#cache}; connect once per app`);
    }
    this.#source = source;
    if (coalesceMs !== undefined) this.invalidator.coalesceMs = coalesceMs;
    const disconnect = this.invalidator.connect(source);
    // The stream watches the keys shown now, and follows them (the stream throttles its reconnects).
    const offWatched = watchKeys(this.invalidator, source);
    const offSignIn = followSignIn(source, { appSucceeded: this.#appSucceeded });
    this.#log = [...source.log];
    const offStatus = source.onStatus(() => this.#changes.notify());
    const offFrames = source.onFrame(() => {
      this.#log = [...source.log];
      this.#changes.notify();
    });
    this.#changes.notify();
    return () => {
      offStatus();
      offFrames();
      offSignIn();
      offWatched();
      disconnect();
      if (this.#source === source) this.#source = null;
      this.#changes.notify();
    };
  }
}

const EMPTY: readonly FrameLogEntry[] = [];

function watchKeys(invalidator: SessionInvalidator, source: UpdateSource): () => void {
  if (!source.watch || !invalidator.watched || !invalidator.onWatched) return () => {};
  source.watch(invalidator.watched());
  return invalidator.onWatched((watched) => source.watch?.(watched));
}

/** The one session of each cache (a QueryClient, an SWR cache), created on its first use. */
export function sessionOf<K extends object, S>(sessions: WeakMap<K, S>, cache: K, create: () => S): S {
  let session = sessions.get(cache);
  if (!session) {
    session = create();
    sessions.set(cache, session);
  }
  return session;
}
