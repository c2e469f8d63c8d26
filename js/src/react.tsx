"use client";
// The React adapter: hooks over the framework-free core (session/, invalidation/). Nothing
// here decides what to invalidate; it only ties the core's lifetime to components.
import { focusManager, useQueryClient, type QueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useSyncExternalStore, type ReactNode } from "react";

import { QueryInvalidator as CoreInvalidator, type QueryInvalidatorOptions, type UpdateTag } from "./invalidation/query-invalidator.js";
import type { FrameLogEntry, StreamStatus, UpdateSource, UpdateType } from "./protocol.js";
import { queryUpdates as coreQueryUpdates, type ConnectOptions, type QueryUpdates } from "./session/session.js";

export { CursorTracker } from "./cursors.js";
export { type QueryInvalidatorOptions, type UpdatesMeta, type UpdateTag } from "./invalidation/query-invalidator.js";

/** The invalidator, following react-query's focusManager unless told otherwise. */
export class QueryInvalidator extends CoreInvalidator {
  constructor(client: QueryClient, options: QueryInvalidatorOptions = {}) {
    super(client, { focusManager, ...options });
  }
}

export interface UseSSEUpdatesOptions extends ConnectOptions {
  /** Default: the client of the surrounding QueryClientProvider. */
  queryClient?: QueryClient;
  /** false: no connection (e.g. while signed out). Default true. The cursor carries across. */
  enabled?: boolean;
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
  const { stream, enabled = true, share = true, credentials, cursors } = options;
  const url = String(options.url ?? "/api/updates");
  const types = options.types ? [...options.types].join(",") : "";

  useEffect(() => {
    if (!enabled) return undefined;
    const { queryClient: _client, enabled: _enabled, ...connectOptions } = latest.current;
    return session.connect({
      ...connectOptions,
      url,
      share,
      // Read at connect time, so a new token needs no reconnect of the hook.
      headers: async () => {
        const headers = latest.current.headers;
        return (typeof headers === "function" ? await headers() : headers) ?? {};
      },
    });
  }, [session, stream, enabled, url, types, share, credentials, cursors]);

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

export interface AutoRefetchOptions {
  /** Only these keys of the type(s) (e.g. one project's id); updates of the whole type still count. */
  keys?: readonly (string | number)[];
  queryClient?: QueryClient;
}

/**
 * Declares which update types a query depends on and returns the query unchanged. It does not
 * refetch by itself: the app-wide invalidator does, once per burst for all components. The tags
 * stay on the query after the component unmounts, until the query leaves the cache.
 */
export function useAutoRefetch<Q extends { refetch: (...args: never[]) => unknown }>(
  query: Q,
  types: UpdateType | readonly UpdateType[],
  options: AutoRefetchOptions = {},
): Q {
  const session = sessionFor(useQueryClient(options.queryClient));
  const list: readonly UpdateType[] = Array.isArray(types) ? types : [types as UpdateType];
  const tags: UpdateTag[] = list.map((type) => (options.keys ? { type, keys: options.keys } : type));
  const signature = JSON.stringify(tags);
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
