// The Solid adapter (@tanstack/solid-query): primitives and a provider component over the
// framework-free core. Nothing here decides what to invalidate; it only ties the core's lifetime
// to a component's owner.
import type { QueryClient as CoreQueryClient } from "@tanstack/query-core";
import { focusManager, useQueryClient, type QueryClient } from "@tanstack/solid-query";
import { createEffect, createSignal, onCleanup, splitProps, untrack, type Accessor, type JSX } from "solid-js";

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

type MaybeAccessor<T> = T | Accessor<T>;

const read = <T>(value: MaybeAccessor<T>): T =>
  typeof value === "function" ? (value as Accessor<T>)() : value;

/**
 * The core session of this client, with solid-query's focusManager. solid-query pins its own exact
 * @tanstack/query-core, so its QueryClient may be another copy of the class than the one the core
 * is typed against (private fields make the two types differ); the core uses only its public API.
 */
function sessionFor(client: QueryClient): QueryUpdates {
  return coreQueryUpdates(client as unknown as CoreQueryClient, { focusManager });
}

/**
 * Opens the update stream for as long as the calling component lives, and invalidates the queries
 * that depend on what changed. Pass an accessor to follow signals: a change of `url`, `types`,
 * `share`, `credentials`, `enabled`, `cursors` or `stream` makes a new stream, which resumes from
 * the previous one's cursor. Returns the attached stream (null before).
 */
export function useSSEUpdates(options: MaybeAccessor<UseSSEUpdatesOptions> = {}): Accessor<UpdateSource | null> {
  const session = sessionFor(useQueryClient(untrack(() => read(options).queryClient)));
  const [source, setSource] = createSignal<UpdateSource | null>(session.source);
  onCleanup(session.subscribe(() => setSource(() => session.source)));
  let identity: readonly unknown[] | null = null;
  let disconnect: (() => void) | null = null;
  const stop = () => {
    disconnect?.();
    disconnect = null;
  };
  // An effect, so nothing connects during server-side rendering.
  createEffect(() => {
    const current = read(options);
    const next = streamIdentity(current);
    if (sameIdentity(identity, next)) return;
    identity = next;
    untrack(() => {
      stop();
      if (current.enabled === false) return;
      const { queryClient: _client, ...connectOptions } = current;
      disconnect = connectLatest(session, connectOptions, () => untrack(() => read(options)));
    });
  });
  onCleanup(stop);
  return source;
}

export interface UpdatesProviderProps extends UseSSEUpdatesOptions {
  children?: JSX.Element;
}

/** `useSSEUpdates(props)` as a component: put it inside your QueryClientProvider. */
export function UpdatesProvider(props: UpdatesProviderProps): JSX.Element {
  const [local, options] = splitProps(props, ["children"]);
  useSSEUpdates(() => ({ ...options }));
  return local.children;
}

export interface AutoRefetchOptions<T extends UpdateType = UpdateType> {
  /**
   * Only these keys of the type(s) (e.g. one project's id); updates of the whole type still count.
   * While the query is shown, the stream watches these keys (`watch=`), so a keyed poller on
   * demand polls them (docs/js.md, "Watched keys").
   */
  keys?: MaybeAccessor<readonly UpdateKey<T>[] | undefined>;
  queryClient?: QueryClient;
}

/**
 * Declares which update types a query depends on and returns the query unchanged:
 * `useAutoRefetch(useQuery(() => options), "projects")`. It does not refetch by itself: the
 * app-wide invalidator does, once per burst for all components. The tags stay on the query after
 * the component unmounts, until the query leaves the cache.
 */
export function useAutoRefetch<Q extends { refetch: (...args: never[]) => unknown }, T extends UpdateType = UpdateType>(
  query: Q,
  types: MaybeAccessor<T | readonly T[]>,
  options: AutoRefetchOptions<T> = {},
): Q {
  const invalidator = sessionFor(useQueryClient(options.queryClient)).invalidator;
  createEffect(() => {
    // query.refetch is the observer's own (bound) refetch: how the core finds its query.
    const untag = invalidator.tagObserver(query.refetch, tagsFor(read(types), read(options.keys)));
    onCleanup(untag);
  });
  return query;
}

/** The stream's status for a connection indicator: "closed" while no stream is attached. */
export function useUpdateStatus(queryClient?: QueryClient): Accessor<StreamStatus> {
  const session = sessionFor(useQueryClient(queryClient));
  return follow(session, () => session.status);
}

/** The recent frames, oldest first, for a debug view. */
export function useUpdateLog(queryClient?: QueryClient): Accessor<readonly FrameLogEntry[]> {
  const session = sessionFor(useQueryClient(queryClient));
  return follow(session, () => session.log);
}

function follow<T>(session: QueryUpdates, get: () => T): Accessor<T> {
  const [value, setValue] = createSignal<T>(get());
  onCleanup(session.subscribe(() => setValue(() => get())));
  return value;
}
