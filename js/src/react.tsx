"use client";
// The React adapter: hooks over the framework-free core (session/, invalidation/). Nothing
// here decides what to invalidate; it only ties the core's lifetime to components.
import { focusManager, useQueryClient, type QueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useSyncExternalStore, type ReactNode } from "react";

import { QueryInvalidator as CoreInvalidator, type QueryInvalidatorOptions } from "./invalidation/query-invalidator.js";
import { tagsFor, type UpdateTag } from "./invalidation/tags.js";
import type { FrameLogEntry, StreamStatus, UpdateKey, UpdateSource, UpdateType } from "./protocol.js";
import { connectLatest, streamIdentity, type AdapterConnectOptions } from "./session/adapter.js";
import { queryUpdates as coreQueryUpdates, type QueryUpdates } from "./session/query-updates.js";

export { CursorTracker } from "./cursors.js";
export { type QueryInvalidatorOptions, type UpdatesMeta } from "./invalidation/query-invalidator.js";
export { fromSchema, type SchemaOperation, type SchemaTags, type TagsFromKey } from "./invalidation/schema-tags.js";
export { type UpdateTag } from "./invalidation/tags.js";

/** The invalidator, following react-query's focusManager unless told otherwise. */
export class QueryInvalidator extends CoreInvalidator {
  constructor(client: QueryClient, options: QueryInvalidatorOptions = {}) {
    super(client, { focusManager, ...options });
  }
}

export interface UseSSEUpdatesOptions extends AdapterConnectOptions {
  /** Default: the client of the surrounding QueryClientProvider. */
  queryClient?: QueryClient;
}

/** The core session of this client, with react-query's focusManager (one copy even if query-core is not deduped). */
function sessionFor(client: QueryClient): QueryUpdates {
  return coreQueryUpdates(client, { focusManager });
}

/**
 * Opens the update stream (once per app) and invalidates the queries that depend on what
 * changed. Returns the stream, or null before it is attached.
 */
export function useSSEUpdates(options: UseSSEUpdatesOptions = {}): UpdateSource | null {
  const session = sessionFor(useQueryClient(options.queryClient));
  const latest = useRef(options);
  latest.current = options;

  useEffect(() => {
    if (options.enabled === false) return undefined;
    const { queryClient: _client, ...connectOptions } = latest.current;
    return connectLatest(session, connectOptions, () => latest.current);
  }, [session, ...streamIdentity(options)]);

  return useSyncExternalStore(session.subscribe, () => session.source, () => null);
}

export interface UpdatesProviderProps extends UseSSEUpdatesOptions {
  children?: ReactNode;
}

/** `useSSEUpdates(props)` as a component: put it inside your QueryClientProvider. */
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
  queryClient?: QueryClient;
}

/**
 * Declares which update types a query depends on and returns the query unchanged. It does not
 * refetch by itself: the app-wide invalidator does, once per burst for all components. The tags
 * stay on the query after the component unmounts, until the query leaves the cache.
 */
export function useAutoRefetch<Q extends { refetch: (...args: never[]) => unknown }, T extends UpdateType = UpdateType>(
  query: Q,
  types: T | readonly T[],
  options: AutoRefetchOptions<T> = {},
): Q {
  const session = sessionFor(useQueryClient(options.queryClient));
  const signature = JSON.stringify(tagsFor(types, options.keys));
  const refetch = query.refetch;
  useEffect(
    () => session.invalidator.tagObserver(refetch, JSON.parse(signature) as UpdateTag[]),
    [session, refetch, signature],
  );
  return query;
}

/** The stream's status for a connection indicator: "closed" while no stream is attached. */
export function useUpdateStatus(queryClient?: QueryClient): StreamStatus {
  const session = sessionFor(useQueryClient(queryClient));
  return useSyncExternalStore(session.subscribe, () => session.status, () => "connecting");
}

/** The recent frames, oldest first, for a debug view. */
export function useUpdateLog(queryClient?: QueryClient): readonly FrameLogEntry[] {
  const session = sessionFor(useQueryClient(queryClient));
  return useSyncExternalStore(session.subscribe, () => session.log, () => EMPTY);
}

const EMPTY: readonly FrameLogEntry[] = [];
