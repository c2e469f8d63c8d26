"use client";
// The SWR adapter (swr 2.x): invalidation through SWR's `mutate` with a key filter, keys tagged by
// a middleware that also follows their fetches and mounts (SWR tells nobody about either). The
// decisions are the key invalidator's (invalidation/key-invalidator.ts); this module ties it to SWR and React.
import { useEffect, useRef, useSyncExternalStore, type ReactNode } from "react";
import { unstable_serialize, useSWRConfig, type BareFetcher, type Cache, type Middleware, type ScopedMutator } from "swr";

import { tagsFor } from "./session/adapter.js";
import { KeyInvalidator, type KeyInvalidatorOptions } from "./invalidation/key-invalidator.js";
import type { FrameLogEntry, StreamStatus, UpdateSource, UpdateType } from "./protocol.js";
import type { ConnectOptions } from "./session/session.js";
import { createUpdateStream } from "./stream/shared.js";

export { type UpdateTag } from "./invalidation/query-invalidator.js";

/** What the SWR adapter takes to open the stream: no `cursors` (SWR's data carries no cursor). */
export type SWRConnectOptions = Omit<ConnectOptions, "cursors">;

/** Everything that keeps one SWR cache fresh: `swrUpdates(cache, mutate)`, one per cache. */
export class SWRUpdates {
  readonly invalidator: KeyInvalidator;
  readonly #listeners = new Set<() => void>();
  #source: UpdateSource | null = null;
  #log: readonly FrameLogEntry[] = EMPTY;

  constructor(mutate: ScopedMutator, options: KeyInvalidatorOptions = {}) {
    // A filter, so one call revalidates every matching key of this cache, each by one of its hooks.
    this.invalidator = new KeyInvalidator((keys) => mutate((key) => keys.has(unstable_serialize(key))), options);
  }

  get source(): UpdateSource | null {
    return this.#source;
  }

  get status(): StreamStatus {
    return this.#source?.status ?? "closed";
  }

  get log(): readonly FrameLogEntry[] {
    return this.#log;
  }

  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** Opens the stream (or attaches `options.stream`); returns the disconnect. The next connect resumes. */
  connect(options: SWRConnectOptions = {}): () => void {
    const { stream, coalesceMs, ...streamOptions } = options;
    const invalidator = this.invalidator;
    if (coalesceMs !== undefined) invalidator.coalesceMs = coalesceMs;
    const source =
      stream ??
      createUpdateStream({
        ...streamOptions,
        url: options.url ?? "/api/updates",
        cursor: options.cursor ?? (() => invalidator.startCursor()),
      });
    this.#source = source;
    const disconnect = invalidator.connect(source);
    this.#log = [...source.log];
    const offStatus = source.onStatus(() => this.#notify());
    const offFrames = source.onFrame(() => {
      this.#log = [...source.log];
      this.#notify();
    });
    source.start();
    this.#notify();
    return () => {
      offStatus();
      offFrames();
      disconnect();
      if (!stream) source.close();
      if (this.#source === source) this.#source = null;
      this.#notify();
    };
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

const EMPTY: readonly FrameLogEntry[] = [];
const sessions = new WeakMap<Cache, SWRUpdates>();

/** The one SWRUpdates of this cache (the `cache` and `mutate` of `useSWRConfig()`), created on first use with these options. */
export function swrUpdates(cache: Cache, mutate: ScopedMutator, options: KeyInvalidatorOptions = {}): SWRUpdates {
  let session = sessions.get(cache);
  if (!session) {
    session = new SWRUpdates(mutate, options);
    sessions.set(cache, session);
  }
  return session;
}

function useSession(): SWRUpdates {
  const { cache, mutate } = useSWRConfig();
  return swrUpdates(cache, mutate);
}

export interface UseSSEUpdatesOptions extends SWRConnectOptions {
  /** false: no connection (e.g. while signed out). Default true. The cursor carries across. */
  enabled?: boolean;
}

/**
 * Opens the update stream (once per app, under the SWRConfig whose cache it keeps fresh) and
 * revalidates the keys that depend on what changed. Returns the stream, or null before.
 */
export function useSSEUpdates(options: UseSSEUpdatesOptions = {}): UpdateSource | null {
  const session = useSession();
  const latest = useRef(options);
  latest.current = options;
  const { stream, enabled = true, share = true, credentials } = options;
  const url = String(options.url ?? "/api/updates");
  const types = options.types ? [...options.types].join(",") : "";

  useEffect(() => {
    if (!enabled) return undefined;
    const { enabled: _enabled, ...connectOptions } = latest.current;
    return session.connect({
      ...connectOptions,
      url,
      share,
      // Read at connect time, so a new token needs no new stream.
      headers: async () => {
        const headers = latest.current.headers;
        return (typeof headers === "function" ? await headers() : headers) ?? {};
      },
    });
  }, [session, stream, enabled, url, types, share, credentials]);

  return useSyncExternalStore(session.subscribe, () => session.source, () => null);
}

export interface UpdatesProviderProps extends UseSSEUpdatesOptions {
  children?: ReactNode;
}

/** `useSSEUpdates(props)` as a component: put it inside your SWRConfig (if any). */
export function UpdatesProvider({ children, ...options }: UpdatesProviderProps): ReactNode {
  useSSEUpdates(options);
  return children;
}

export interface AutoRefetchOptions {
  /** Only these keys of the type(s) (e.g. one project's id); updates of the whole type still count. */
  keys?: readonly (string | number)[];
}

/**
 * The tagging helper, an SWR middleware: `useSWR(key, fetcher, { use: [autoRefetch("projects")] })`
 * (or in SWRConfig's `use` for every hook under it). The key is revalidated on updates of these
 * types, once per burst, never while its fetch is in flight (exactly one more after it instead);
 * while no component shows it, it is only marked, and revalidated when one does. The tags stay
 * with the key for as long as the cache lives.
 */
export function autoRefetch(types: UpdateType | readonly UpdateType[], options: AutoRefetchOptions = {}): Middleware {
  const tags = tagsFor(types, options.keys);
  return (useSWRNext) =>
    (key, fetcher, config) => {
      const session = useSession();
      const serialized = unstable_serialize(key);
      // In render, so the tag is there before the first fetch; tagging twice changes nothing.
      if (serialized) session.invalidator.tag(serialized, tags);
      useEffect(() => (serialized ? session.invalidator.mounted(serialized) : undefined), [session, serialized]);
      const tracked: BareFetcher<any> | null =
        fetcher && serialized ? (...args) => session.invalidator.track(serialized, () => fetcher(...args)) : fetcher;
      return useSWRNext(key, tracked, config);
    };
}

/** The stream's status for a connection indicator: "closed" while no stream is attached. */
export function useUpdateStatus(): StreamStatus {
  const session = useSession();
  return useSyncExternalStore(session.subscribe, () => session.status, () => "connecting");
}

/** The recent frames, oldest first, for a debug view. */
export function useUpdateLog(): readonly FrameLogEntry[] {
  const session = useSession();
  return useSyncExternalStore(session.subscribe, () => session.log, () => EMPTY);
}
