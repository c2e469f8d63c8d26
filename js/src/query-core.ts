// The framework-free entry: keep any @tanstack/query-core QueryClient fresh (React, Vue, Svelte,
// Solid and Angular adapters all sit on it), with no UI framework imported. An adapter needs:
// `queryUpdates(client, { focusManager })` once per client; `.connect(options)` for the stream's
// lifetime (returns the disconnect; the cursor carries to the next connect); `.subscribe()` with
// `.status`, `.source` and `.log` for its status and log primitives; and
// `.invalidator.tagObserver(observer.refetch, tags)` for its `useAutoRefetch`.
import { focusManager, type QueryClient } from "@tanstack/query-core";

import { QueryInvalidator as CoreInvalidator, type QueryInvalidatorOptions } from "./invalidator.js";
import { queryUpdates as coreQueryUpdates, type QueryUpdates, type QueryUpdatesOptions } from "./session.js";

export { CursorTracker } from "./cursors.js";
export { type FocusManagerLike, type QueryInvalidatorOptions, type UpdatesMeta, type UpdateTag } from "./invalidator.js";
export { QueryUpdates, type ConnectOptions, type QueryUpdatesOptions } from "./session.js";

/** The invalidator, following @tanstack/query-core's focusManager unless told otherwise. */
export class QueryInvalidator extends CoreInvalidator {
  constructor(client: QueryClient, options: QueryInvalidatorOptions = {}) {
    super(client, { focusManager, ...options });
  }
}

/** The one QueryUpdates of this client: `queryUpdates(client).connect({ url, cursors })`. */
export function queryUpdates(client: QueryClient, options: QueryUpdatesOptions = {}): QueryUpdates {
  return coreQueryUpdates(client, { focusManager, ...options });
}
