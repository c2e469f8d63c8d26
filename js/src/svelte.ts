// The Svelte adapter (Svelte 5, @tanstack/svelte-query 6): functions to call while a component
// initialises, over the framework-free core. Plain TypeScript, no runes, so it needs no compiler:
// options are read through `toStore` (which follows runes state) and results are read through
// `createSubscriber` getters, as svelte/reactivity does. Nothing here decides what to invalidate.
import type { QueryClient as CoreQueryClient } from "@tanstack/query-core";
import { focusManager, useQueryClient, type QueryClient } from "@tanstack/svelte-query";
import { onMount } from "svelte";
import { createSubscriber } from "svelte/reactivity";
import { toStore } from "svelte/store";

import { tagsFor } from "./invalidation/tags.js";
import type { FrameLogEntry, StreamStatus, UpdateSource, UpdateKey, UpdateType } from "./protocol.js";
import { connectLatest, sameIdentity, streamIdentity, type AdapterConnectOptions } from "./session/adapter.js";
import { queryUpdates as coreQueryUpdates, type QueryUpdates } from "./session/query-updates.js";

export { CursorTracker } from "./cursors.js";
export { type UpdatesMeta } from "./invalidation/query-invalidator.js";
export { fromSchema, type SchemaOperation, type SchemaTags, type TagsFromKey } from "./invalidation/schema-tags.js";
export { type UpdateTag } from "./invalidation/tags.js";

export interface UseSSEUpdatesOptions extends AdapterConnectOptions {
  /** Default: the client of the surrounding QueryClientProvider. */
  queryClient?: QueryClient;
}

/** What `useSSEUpdates` returns; every property is reactive. */
export interface SSEUpdates {
  readonly source: UpdateSource | null;
  readonly status: StreamStatus;
}

type MaybeGetter<T> = T | (() => T);

const read = <T>(value: MaybeGetter<T>): T => (typeof value === "function" ? (value as () => T)() : value);

/**
 * The core session of this client, with svelte-query's focusManager. svelte-query pins its own exact
 * @tanstack/query-core, so its QueryClient may be another copy of the class than the one the core
 * is typed against (private fields make the two types differ); the core uses only its public API.
 */
function sessionFor(client: QueryClient): QueryUpdates {
  return coreQueryUpdates(client as unknown as CoreQueryClient, { focusManager });
}

/**
 * Call it while a component initialises, under QueryClientProvider: opens the update stream once
 * the component is mounted (never during server-side rendering), closes it when it is destroyed,
 * and invalidates the queries that depend on what changed. Pass a getter to follow `$state`: a
 * change of `url`, `types`, `share`, `credentials`, `enabled`, `cursors` or `stream` makes a new
 * stream, which resumes from the previous one's cursor.
 */
export function useSSEUpdates(options: MaybeGetter<UseSSEUpdatesOptions> = {}): SSEUpdates {
  const initial = read(options);
  const session = sessionFor(useQueryClient(initial.queryClient));
  const latest = toStore(() => read(options));
  let identity: readonly unknown[] | null = null;
  let disconnect: (() => void) | null = null;
  let current = initial;
  const stop = () => {
    disconnect?.();
    disconnect = null;
  };
  onMount(() => {
    const unsubscribe = latest.subscribe((next) => {
      current = next;
      const nextIdentity = streamIdentity(next);
      if (sameIdentity(identity, nextIdentity)) return;
      identity = nextIdentity;
      stop();
      if (next.enabled === false) return;
      const { queryClient: _client, ...connectOptions } = next;
      disconnect = connectLatest(session, connectOptions, () => current);
    });
    return () => {
      unsubscribe();
      stop();
    };
  });
  const track = subscriberOf(session);
  return {
    get source() {
      track();
      return session.source;
    },
    get status() {
      track();
      return session.status;
    },
  };
}

export interface AutoRefetchOptions<T extends UpdateType = UpdateType> {
  /**
   * Only these keys of the type(s) (e.g. one project's id); updates of the whole type still count.
   * While the query is shown, the stream watches these keys (`watch=`), so a keyed poller on
   * demand polls them (docs/js.md, "Watched keys").
   */
  keys?: MaybeGetter<readonly UpdateKey<T>[] | undefined>;
  queryClient?: QueryClient;
}

/**
 * Declares which update types a query depends on and returns the query unchanged:
 * `const projects = useAutoRefetch(createQuery(() => options), "projects")`. It does not refetch
 * by itself: the app-wide invalidator does, once per burst for all components. The tags stay on
 * the query after the component is destroyed, until the query leaves the cache.
 */
export function useAutoRefetch<Q extends { refetch: (...args: never[]) => unknown }, T extends UpdateType = UpdateType>(
  query: Q,
  types: MaybeGetter<T | readonly T[]>,
  options: AutoRefetchOptions<T> = {},
): Q {
  const invalidator = sessionFor(useQueryClient(options.queryClient)).invalidator;
  // query.refetch is the observer's own (bound) refetch: how the core finds its query.
  const declared = toStore(() => ({ refetch: query.refetch, tags: tagsFor(read(types), read(options.keys)) }));
  let untag: (() => void) | null = null;
  let signature = "";
  onMount(() => {
    let refetch: unknown = null;
    const unsubscribe = declared.subscribe((next) => {
      const nextSignature = JSON.stringify(next.tags);
      if (next.refetch === refetch && nextSignature === signature) return;
      refetch = next.refetch;
      signature = nextSignature;
      untag?.();
      untag = invalidator.tagObserver(next.refetch, next.tags);
    });
    return () => {
      unsubscribe();
      untag?.();
    };
  });
  return query;
}

/** The stream's status for a connection indicator (`status.current`): "closed" while no stream is attached. */
export function useUpdateStatus(queryClient?: QueryClient): { readonly current: StreamStatus } {
  const session = sessionFor(useQueryClient(queryClient));
  const track = subscriberOf(session);
  return {
    get current() {
      track();
      return session.status;
    },
  };
}

/** The recent frames, oldest first, for a debug view (`log.current`). */
export function useUpdateLog(queryClient?: QueryClient): { readonly current: readonly FrameLogEntry[] } {
  const session = sessionFor(useQueryClient(queryClient));
  const track = subscriberOf(session);
  return {
    get current() {
      track();
      return session.log;
    },
  };
}

/** Makes a getter that reads the session reactive, subscribed only while something reads it. */
function subscriberOf(session: QueryUpdates): () => void {
  return createSubscriber((update) => session.subscribe(update));
}
