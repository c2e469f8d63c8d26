// The Vue adapter (@tanstack/vue-query): a plugin and composables over the framework-free core.
// Nothing here decides what to invalidate; it only ties the core's lifetime to an app or a scope.
import type { Query as CoreQuery, QueryClient as CoreQueryClient } from "@tanstack/query-core";
import { focusManager, useQueryClient, type QueryClient, type QueryKey } from "@tanstack/vue-query";
import {
  onScopeDispose,
  readonly,
  shallowRef,
  toValue,
  watch,
  type App,
  type MaybeRefOrGetter,
  type Plugin,
  type Ref,
} from "vue";

import { tagsFor } from "./invalidation/tags.js";
import type { FrameLogEntry, StreamStatus, UpdateSource, UpdateKey, UpdateType } from "./protocol.js";
import { connectLatest, sameIdentity, streamIdentity, type AdapterConnectOptions } from "./session/adapter.js";
import { queryUpdates as coreQueryUpdates, type QueryUpdates } from "./session/query-updates.js";

export { CursorTracker } from "./cursors.js";
export { type UpdatesMeta } from "./invalidation/query-invalidator.js";
export { fromSchema, type SchemaOperation, type SchemaTags, type TagsFromKey } from "./invalidation/schema-tags.js";
export { type UpdateTag } from "./invalidation/tags.js";

export interface UseSSEUpdatesOptions extends AdapterConnectOptions {
  /** Default: the client installed by VueQueryPlugin. */
  queryClient?: QueryClient;
}

export interface UpdatesPluginOptions extends UseSSEUpdatesOptions {
  /** The `queryClientKey` given to VueQueryPlugin, when the app has several clients. */
  queryClientKey?: string;
}

/**
 * The core session of this client, with vue-query's focusManager. vue-query pins its own exact
 * @tanstack/query-core, so its QueryClient may be another copy of the class than the one the core
 * is typed against (private fields make the two types differ); the core uses only its public API.
 */
function sessionFor(client: QueryClient): QueryUpdates {
  return coreQueryUpdates(client as unknown as CoreQueryClient, { focusManager });
}

/**
 * `app.use(UpdatesPlugin, { url, cursors })` after `app.use(VueQueryPlugin)`: one stream for the
 * app's lifetime (closed by `app.unmount()`). Use `useSSEUpdates` instead when the stream must
 * follow reactive state (a sign-in, a project's types).
 */
export const UpdatesPlugin: Plugin<[UpdatesPluginOptions?]> = {
  install(app: App, options: UpdatesPluginOptions = {}) {
    const { queryClient, queryClientKey, ...connectOptions } = options;
    const client = queryClient ?? app.runWithContext(() => useQueryClient(queryClientKey));
    // No stream during server-side rendering: the browser opens it.
    if (typeof window === "undefined" || connectOptions.enabled === false) return;
    const disconnect = connectLatest(sessionFor(client), connectOptions, () => connectOptions);
    app.onUnmount(disconnect);
  },
};

/**
 * Opens the update stream for as long as the calling component (or effect scope) lives, and
 * invalidates the queries that depend on what changed. `options` may be a ref or a getter: a change
 * of `url`, `types`, `share`, `credentials`, `enabled`, `cursors` or `stream` makes a new stream,
 * which resumes from the previous one's cursor. Returns the attached stream (null before).
 */
export function useSSEUpdates(
  options: MaybeRefOrGetter<UseSSEUpdatesOptions> = {},
): Readonly<Ref<UpdateSource | null>> {
  const session = sessionFor(toValue(options).queryClient ?? useQueryClient());
  const source = shallowRef<UpdateSource | null>(session.source);
  const offSession = session.subscribe(() => (source.value = session.source));
  let identity: readonly unknown[] | null = null;
  let disconnect: (() => void) | null = null;
  const stop = () => {
    disconnect?.();
    disconnect = null;
  };
  watch(
    () => streamIdentity(toValue(options)),
    (next) => {
      if (sameIdentity(identity, next)) return;
      identity = next;
      stop();
      const current = toValue(options);
      if (current.enabled === false || typeof window === "undefined") return;
      const { queryClient: _client, ...connectOptions } = current;
      disconnect = connectLatest(session, connectOptions, () => toValue(options));
    },
    { immediate: true },
  );
  onScopeDispose(() => {
    stop();
    offSession();
  });
  return readonly(source) as Readonly<Ref<UpdateSource | null>>;
}

export interface AutoRefetchOptions<T extends UpdateType = UpdateType> {
  /**
   * Only these keys of the type(s) (e.g. one project's id); updates of the whole type still count.
   * While the query is shown, the stream watches these keys (`watch=`), so a keyed poller on
   * demand polls them (docs/js.md, "Watched keys").
   */
  keys?: MaybeRefOrGetter<readonly UpdateKey<T>[] | undefined>;
  queryClient?: QueryClient;
}

/**
 * Declares that the query with this key depends on these update types; call it in `setup()` next
 * to `useQuery` with the same key (a ref or a getter follows the query to its new key). The tags
 * go onto the query and stay after the component unmounts, until the query leaves the cache.
 *
 * It takes the key, not useQuery's result: vue-query's result hides which query it observes.
 */
export function useAutoRefetch<T extends UpdateType = UpdateType>(
  queryKey: MaybeRefOrGetter<QueryKey>,
  types: MaybeRefOrGetter<T | readonly T[]>,
  options: AutoRefetchOptions<T> = {},
): void {
  const client = options.queryClient ?? useQueryClient();
  const invalidator = sessionFor(client).invalidator;
  const cache = client.getQueryCache();
  const tag = () => {
    const query = cache.find({ queryKey: toValue(queryKey), exact: true });
    // Another copy of query-core's Query class, as in sessionFor.
    if (query) invalidator.tagQuery(query as unknown as CoreQuery, tagsFor(toValue(types), toValue(options.keys)));
  };
  // The query may be created after this call (useQuery below it) or again after it left the cache.
  const offCache = cache.subscribe((event) => {
    if (event.type === "added") tag();
  });
  watch(() => [toValue(queryKey), toValue(types), toValue(options.keys)], tag, { immediate: true, deep: true });
  onScopeDispose(offCache);
}

/** The stream's status for a connection indicator: "closed" while no stream is attached. */
export function useUpdateStatus(queryClient?: QueryClient): Readonly<Ref<StreamStatus>> {
  const session = sessionFor(queryClient ?? useQueryClient());
  return follow(session, () => session.status);
}

/** The recent frames, oldest first, for a debug view. */
export function useUpdateLog(queryClient?: QueryClient): Readonly<Ref<readonly FrameLogEntry[]>> {
  const session = sessionFor(queryClient ?? useQueryClient());
  return follow(session, () => session.log);
}

function follow<T>(session: QueryUpdates, read: () => T): Readonly<Ref<T>> {
  const value = shallowRef(read());
  onScopeDispose(session.subscribe(() => (value.value = read())));
  return readonly(value) as Readonly<Ref<T>>;
}
