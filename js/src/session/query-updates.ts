// The session of a TanStack QueryClient: the update stream wired to its QueryInvalidator. Every
// TanStack adapter (React, Vue, Svelte, Solid) and the `query-updates` entry get it from here.
import type { QueryClient } from "@tanstack/query-core";

import type { FocusManagerLike } from "../invalidation/focus.js";
import { QueryInvalidator } from "../invalidation/query-invalidator.js";
import type { TagsFromKey } from "../invalidation/schema-tags.js";
import { sessionOf, UpdatesSession } from "./session.js";

export interface QueryUpdatesOptions {
  /** The focusManager of the adapter's framework package (the same object as query-core's when deduped). */
  focusManager?: FocusManagerLike;
  logger?: Pick<Console, "warn" | "error">;
  /** Tags for the queries that declare none, from their key: `fromSchema(refetchTags)`. */
  tags?: TagsFromKey;
}

/**
 * Everything that keeps one QueryClient fresh. Get it with `queryUpdates(client)`: one per client,
 * so tags declared anywhere (a hook outside the provider, a loader) reach the same invalidator.
 */
export class QueryUpdates extends UpdatesSession<QueryInvalidator> {
  constructor(client: QueryClient, options: QueryUpdatesOptions = {}) {
    const logger = options.logger ?? console;
    super(new QueryInvalidator(client, { focusManager: options.focusManager, logger, tags: options.tags }), "QueryClient", logger, (listener) =>
      appSucceeded(client, listener),
    );
  }
}

const sessions = new WeakMap<QueryClient, QueryUpdates>();

/** The one QueryUpdates of this client (created on first use with these options). */
export function queryUpdates(client: QueryClient, options: QueryUpdatesOptions = {}): QueryUpdates {
  return sessionOf(sessions, client, () => new QueryUpdates(client, options));
}

/** Calls back on every query fetch and mutation of this client that succeeded (not `setQueryData`). */
function appSucceeded(client: QueryClient, listener: () => void): () => void {
  const offQueries = client.getQueryCache().subscribe((event) => {
    if (event.type === "updated" && event.action.type === "success" && !event.action.manual) listener();
  });
  const offMutations = client.getMutationCache().subscribe((event) => {
    if (event.type === "updated" && event.action.type === "success") listener();
  });
  return () => {
    offQueries();
    offMutations();
  };
}
