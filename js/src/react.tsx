import { useQueryClient, type QueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useSyncExternalStore, type ReactNode } from "react";

import { QueryInvalidator, type UpdateTag } from "./invalidator.js";
import type { FrameLogEntry, StreamStatus, UpdateSource, UpdateType } from "./protocol.js";
import { createUpdateStream, type CreateUpdateStreamOptions } from "./shared.js";

export { QueryInvalidator, type QueryInvalidatorOptions, type UpdateTag, type UpdatesMeta } from "./invalidator.js";

export interface UseSSEUpdatesOptions extends Partial<CreateUpdateStreamOptions> {
  /** Default "/api/updates". */
  url?: string | URL;
  /** Use this stream instead of creating one; it is started but not closed on unmount. */
  stream?: UpdateSource;
  /** Updates arriving within this window share one invalidation pass. Default 25 ms. */
  coalesceMs?: number;
  /** Default: the client of the surrounding QueryClientProvider. */
  queryClient?: QueryClient;
  /** false: no connection (e.g. while signed out). Default true. */
  enabled?: boolean;
}

/**
 * Everything the hooks share for one QueryClient. Keyed by the client, not by a React context,
 * so useAutoRefetch works anywhere below the QueryClientProvider, also outside UpdatesProvider.
 */
class Hub {
  readonly invalidator: QueryInvalidator;
  source: UpdateSource | null = null;
  log: readonly FrameLogEntry[] = [];
  readonly #listeners = new Set<() => void>();

  constructor(client: QueryClient) {
    this.invalidator = new QueryInvalidator(client);
  }

  attach(source: UpdateSource, coalesceMs: number | undefined): () => void {
    if (this.source && this.source !== source) {
      console.warn("refetch: useSSEUpdates() runs twice for one QueryClient; call it once per app");
    }
    this.source = source;
    const invalidator = this.invalidator;
    if (coalesceMs !== undefined) invalidator.coalesceMs = coalesceMs;
    invalidator.start();
    this.log = [...source.log];
    const offEvents = source.subscribe((event) => invalidator.handle(event));
    const offStatus = source.onStatus(() => this.#notify());
    const offFrames = source.onFrame(() => {
      this.log = [...source.log];
      this.#notify();
    });
    this.#notify();
    return () => {
      offEvents();
      offStatus();
      offFrames();
      invalidator.stop();
      if (this.source === source) this.source = null;
      this.#notify();
    };
  }

  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

}

const hubs = new WeakMap<QueryClient, Hub>();

function hubFor(client: QueryClient): Hub {
  let hub = hubs.get(client);
  if (!hub) {
    hub = new Hub(client);
    hubs.set(client, hub);
  }
  return hub;
}

/**
 * Opens the update stream (once per app) and invalidates the queries that depend on what
 * changed. Returns the stream, or null before it is attached.
 */
export function useSSEUpdates(options: UseSSEUpdatesOptions = {}): UpdateSource | null {
  const client = useQueryClient(options.queryClient);
  const hub = hubFor(client);
  const latest = useRef(options);
  latest.current = options;
  const { stream, enabled = true, share = true, credentials } = options;
  const url = String(options.url ?? "/api/updates");
  const types = options.types ? [...options.types].join(",") : "";

  useEffect(() => {
    if (!enabled) return undefined;
    const { stream: _stream, coalesceMs, queryClient: _client, enabled: _enabled, ...streamOptions } =
      latest.current;
    const source =
      stream ??
      createUpdateStream({
        ...streamOptions,
        url,
        share,
        // Read at connect time, so a new token needs no reconnect of the hook.
        headers: async () => {
          const headers = latest.current.headers;
          return (typeof headers === "function" ? await headers() : headers) ?? {};
        },
      });
    const detach = hub.attach(source, coalesceMs);
    source.start();
    return () => {
      detach();
      if (!stream) source.close();
    };
  }, [hub, stream, enabled, url, types, share, credentials]);

  return useSyncExternalStore(hub.subscribe, () => hub.source, () => null);
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
 * refetch by itself: the app-wide invalidator does, once per burst for all components.
 */
export function useAutoRefetch<Q extends { refetch: (...args: never[]) => unknown }>(
  query: Q,
  types: UpdateType | readonly UpdateType[],
  options: AutoRefetchOptions = {},
): Q {
  const hub = hubFor(useQueryClient(options.queryClient));
  const list: readonly UpdateType[] = Array.isArray(types) ? types : [types as UpdateType];
  const tags: UpdateTag[] = list.map((type) => (options.keys ? { type, keys: options.keys } : type));
  const signature = JSON.stringify(tags);
  const refetch = query.refetch;
  useEffect(
    () => hub.invalidator.tagObserver(refetch, JSON.parse(signature) as UpdateTag[]),
    [hub, refetch, signature],
  );
  return query;
}

/** The stream's status for a connection indicator: "closed" while no stream is attached. */
export function useUpdateStatus(queryClient?: QueryClient): StreamStatus {
  const hub = hubFor(useQueryClient(queryClient));
  return useSyncExternalStore(
    hub.subscribe,
    () => hub.source?.status ?? "closed",
    () => "connecting",
  );
}

/** The recent frames, oldest first, for a debug view. */
export function useUpdateLog(queryClient?: QueryClient): readonly FrameLogEntry[] {
  const hub = hubFor(useQueryClient(queryClient));
  return useSyncExternalStore(hub.subscribe, () => hub.log, () => EMPTY);
}

const EMPTY: readonly FrameLogEntry[] = [];
