"use client";
// The SWR adapter (swr 2.x): invalidation through SWR's `mutate` with a key filter, keys tagged by
// a middleware that also follows their fetches and mounts (SWR tells nobody about either). The
// decisions are the key invalidator's (invalidation/key-invalidator.ts); this module ties it to SWR and React.
import { useEffect, useRef, useSyncExternalStore, type ReactNode } from "react";
import { unstable_serialize, useSWRConfig, type BareFetcher, type Cache, type Middleware, type ScopedMutator } from "swr";

import { KeyInvalidator, type KeyInvalidatorOptions } from "./invalidation/key-invalidator.js";
import { tagsFor } from "./invalidation/tags.js";
import type { FrameLogEntry, StreamStatus, UpdateKey, UpdateSource, UpdateType } from "./protocol.js";
import { connectLatest, streamIdentity } from "./session/adapter.js";
import { sessionOf, UpdatesSession, type ConnectOptions } from "./session/session.js";

export { type UpdateTag } from "./invalidation/tags.js";

/** What the SWR adapter takes to open the stream: no `cursors` (SWR's data carries no cursor). */
export type SWRConnectOptions = Omit<ConnectOptions, "cursors">;

/** Everything that keeps one SWR cache fresh: `swrUpdates(cache, mutate)`, one per cache. */
export class SWRUpdates extends UpdatesSession<KeyInvalidator> {
  constructor(mutate: ScopedMutator, options: KeyInvalidatorOptions = {}) {
    // A filter, so one call revalidates every matching key of this cache, each by one of its hooks.
    const invalidator = new KeyInvalidator((keys) => mutate((key) => keys.has(unstable_serialize(key))), options);
    super(invalidator, "SWR cache", options.logger);
  }

  /** Opens the stream (or attaches `options.stream`); returns the disconnect. The next connect resumes. */
  override connect(options: SWRConnectOptions = {}): () => void {
    return super.connect(options);
  }
}

const EMPTY: readonly FrameLogEntry[] = [];
const sessions = new WeakMap<Cache, SWRUpdates>();

/** The one SWRUpdates of this cache (the `cache` and `mutate` of `useSWRConfig()`), created on first use with these options. */
export function swrUpdates(cache: Cache, mutate: ScopedMutator, options: KeyInvalidatorOptions = {}): SWRUpdates {
  return sessionOf(sessions, cache, () => new SWRUpdates(mutate, options));
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

  useEffect(() => {
    if (options.enabled === false) return undefined;
    return connectLatest(session, latest.current, () => latest.current);
  }, [session, ...streamIdentity(options)]);

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

export interface AutoRefetchOptions<T extends UpdateType = UpdateType> {
  /**
   * Only these keys of the type(s) (e.g. one project's id); updates of the whole type still count.
   * While the query is shown, the stream watches these keys (`watch=`), so a keyed poller on
   * demand polls them (docs/js.md, "Watched keys").
   */
  keys?: readonly UpdateKey<T>[];
}

/**
 * The tagging helper, an SWR middleware: `useSWR(key, fetcher, { use: [autoRefetch("projects")] })`
 * (or in SWRConfig's `use` for every hook under it). The key is revalidated on updates of these
 * types, once per burst, never while its fetch is in flight (exactly one more after it instead);
 * while no component shows it, it is only marked, and revalidated when one does. The tags stay
 * with the key for as long as the cache lives.
 */
export function autoRefetch<T extends UpdateType = UpdateType>(types: T | readonly T[], options: AutoRefetchOptions<T> = {}): Middleware {
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
