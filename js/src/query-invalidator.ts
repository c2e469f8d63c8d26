// Entry `refetch-sse/query-invalidator`: the invalidation core alone, for any @tanstack/query-core
// QueryClient: turns update events into invalidations, with no stream and no UI framework in it.
// It holds only what invalidates (`QueryInvalidator`) and what notes the cursors
// (`CursorTracker`), so it fits the 6 KB budget of issue 16 (`test/size.test.ts`); opening the
// stream, sharing it across tabs and wiring it to the invalidator is `refetch-sse/query-updates`.
import { focusManager, type QueryClient } from "@tanstack/query-core";

import { QueryInvalidator as CoreInvalidator, type QueryInvalidatorOptions } from "./invalidation/query-invalidator.js";

export { CursorTracker } from "./cursors.js";
export { type FocusManagerLike } from "./invalidation/focus.js";
export { type QueryInvalidatorOptions, type UpdatesMeta } from "./invalidation/query-invalidator.js";
export { fromSchema, type SchemaOperation, type SchemaTags, type TagsFromKey } from "./invalidation/schema-tags.js";
export { type UpdateTag } from "./invalidation/tags.js";

/** The invalidator, following @tanstack/query-core's focusManager unless told otherwise. */
export class QueryInvalidator extends CoreInvalidator {
  constructor(client: QueryClient, options: QueryInvalidatorOptions = {}) {
    super(client, { focusManager, ...options });
  }
}
