// Entry `refetch-sse/query-updates`: the update stream for a bare @tanstack/query-core
// QueryClient: one stream per client, shared across tabs, wired to the invalidator of
// `refetch-sse/query-invalidator` (re-exported here, so a page needs one import). An adapter
// needs: `queryUpdates(client, { focusManager })` once per client; `.connect(options)` for the
// stream's lifetime (returns the disconnect; the cursor carries to the next connect);
// `.subscribe()` with `.status`, `.source` and `.log` for its status and log primitives; and
// `.invalidator.tagObserver(observer.refetch, tags)` for its `useAutoRefetch`.
import { focusManager, type QueryClient } from "@tanstack/query-core";

import {
  queryUpdates as coreQueryUpdates,
  type QueryUpdates,
  type QueryUpdatesOptions,
} from "./session/query-updates.js";

export * from "./query-invalidator.js";
export { QueryUpdates, type QueryUpdatesOptions } from "./session/query-updates.js";
export { type ConnectOptions } from "./session/session.js";

/** The one QueryUpdates of this client: `queryUpdates(client).connect({ url, cursors })`. */
export function queryUpdates(client: QueryClient, options: QueryUpdatesOptions = {}): QueryUpdates {
  return coreQueryUpdates(client, { focusManager, ...options });
}
