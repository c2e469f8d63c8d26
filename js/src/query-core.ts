// The framework-free entry: keep any @tanstack/query-core QueryClient fresh (React, Vue, Svelte,
// Solid and Angular adapters all sit on it), with no UI framework imported.
export { CursorTracker } from "./cursors.js";
export {
  QueryInvalidator,
  type FocusManagerLike,
  type QueryInvalidatorOptions,
  type UpdatesMeta,
  type UpdateTag,
} from "./invalidator.js";
export { QueryUpdates, queryUpdates, type ConnectOptions, type QueryUpdatesOptions } from "./session.js";
