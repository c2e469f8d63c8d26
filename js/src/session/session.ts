// One QueryClient kept fresh by one update stream: what every framework adapter needs beyond the
// invalidator (the current source, its status and frame log for a UI), with no framework in it.
import type { QueryClient } from "@tanstack/query-core";

import type { CursorTracker } from "../cursors.js";
import { listen } from "../subscribable.js";
import { QueryInvalidator, type FocusManagerLike } from "../invalidation/query-invalidator.js";
import type { FrameLogEntry, StreamStatus, UpdateSource } from "../protocol.js";
import { createUpdateStream, type CreateUpdateStreamOptions } from "../stream/shared.js";

export interface ConnectOptions extends Partial<CreateUpdateStreamOptions> {
  /** Default "/api/updates". */
  url?: string | URL;
  /** Use this stream instead of creating one; it is started but not closed on disconnect. */
  stream?: UpdateSource;
  /** Updates arriving within this window share one invalidation pass. Default 25 ms. */
  coalesceMs?: number;
  /** The `Refetch-Cursor`s of the app's API responses: the stream starts from the oldest. */
  cursors?: CursorTracker | null;
}

export interface QueryUpdatesOptions {
  /** The focusManager of the adapter's framework package (the same object as query-core's when deduped). */
  focusManager?: FocusManagerLike;
  logger?: Pick<Console, "warn" | "error">;
}

/**
 * Everything that keeps one QueryClient fresh. Get it with `queryUpdates(client)`: one per client,
 * so tags declared anywhere (a hook outside the provider, a loader) reach the same invalidator.
 */
export class QueryUpdates {
  readonly invalidator: QueryInvalidator;
  readonly #logger: Pick<Console, "warn" | "error">;
  readonly #listeners = new Set<() => void>();
  #source: UpdateSource | null = null;
  #log: readonly FrameLogEntry[] = EMPTY;

  constructor(client: QueryClient, options: QueryUpdatesOptions = {}) {
    const invalidatorOptions = options.focusManager ? { focusManager: options.focusManager } : {};
    this.invalidator = new QueryInvalidator(client, { ...invalidatorOptions, logger: options.logger ?? console });
    this.#logger = options.logger ?? console;
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

  /** Called on every change of source, status or log. */
  subscribe = (listener: () => void): (() => void) => {
    return listen(this.#listeners, listener);
  };

  /**
   * Opens the update stream (or attaches `options.stream`) and invalidates the client's tagged
   * queries from it. Returns the disconnect, which closes a stream it created; the stream's cursor
   * is carried to the next `connect()`, so changes made in between are replayed, not lost.
   */
  connect(options: ConnectOptions = {}): () => void {
    const { stream, coalesceMs, cursors, ...streamOptions } = options;
    const invalidator = this.invalidator;
    if (cursors !== undefined) invalidator.useCursors(cursors);
    const source =
      stream ??
      createUpdateStream({
        ...streamOptions,
        url: options.url ?? "/api/updates",
        cursor: options.cursor ?? (() => invalidator.startCursor()),
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
      this.#logger.warn("refetch: two update streams for one QueryClient; connect once per app");
    }
    this.#source = source;
    if (coalesceMs !== undefined) this.invalidator.coalesceMs = coalesceMs;
    const disconnect = this.invalidator.connect(source);
    this.#log = [...source.log];
    const offStatus = source.onStatus(() => this.#notify());
    const offFrames = source.onFrame(() => {
      this.#log = [...source.log];
      this.#notify();
    });
    this.#notify();
    return () => {
      offStatus();
      offFrames();
      disconnect();
      if (this.#source === source) this.#source = null;
      this.#notify();
    };
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

const EMPTY: readonly FrameLogEntry[] = [];
const sessions = new WeakMap<QueryClient, QueryUpdates>();

/** The one QueryUpdates of this client (created on first use with these options). */
export function queryUpdates(client: QueryClient, options: QueryUpdatesOptions = {}): QueryUpdates {
  let session = sessions.get(client);
  if (!session) {
    session = new QueryUpdates(client, options);
    sessions.set(client, session);
  }
  return session;
}
