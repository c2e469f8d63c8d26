// The framework-free invalidation core: turn update events into invalidations of any
// @tanstack/query-core QueryClient, with no stream and no UI framework in it. It holds only what
// invalidates (`QueryInvalidator`) and what notes the cursors (`CursorTracker`), so it fits the
// 6 KB budget of issue 16 (`test/size.test.ts`); opening the stream, sharing it across tabs and
// wiring it to the invalidator is `refetch-sse/query` (`queryUpdates`), which every adapter uses.
import { focusManager, type QueryClient } from "@tanstack/query-core";

import { QueryInvalidator as CoreInvalidator, type QueryInvalidatorOptions } from "./invalidation/query-invalidator.js";

export { CursorTracker } from "./cursors.js";
export { type FocusManagerLike, type QueryInvalidatorOptions, type UpdatesMeta, type UpdateTag } from "./invalidation/query-invalidator.js";

/** The invalidator, following @tanstack/query-core's focusManager unless told otherwise. */
export class QueryInvalidator extends CoreInvalidator {
  constructor(client: QueryClient, options: QueryInvalidatorOptions = {}) {
    super(client, { focusManager, ...options });
  }
}
