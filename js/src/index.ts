export { fullJitterDelay, type BackoffOptions } from "./stream/backoff.js";
export {
  compareCursors,
  CURSOR_HEADER,
  CursorTracker,
  NOTIFIED_HEADER,
  type CursorListener,
  type CursorSummary,
} from "./cursors.js";
export {
  parseHello,
  parseUpdates,
  type FrameListener,
  type FrameLogEntry,
  type HelloData,
  type Register,
  type StatusListener,
  type StreamFailure,
  type StreamStatus,
  type Update,
  type UpdateEvent,
  type UpdateKey,
  type UpdateListener,
  type UpdateSource,
  type UpdateType,
} from "./protocol.js";
export {
  createUpdateStream,
  SharedUpdateStream,
  type BroadcastChannelConstructor,
  type BroadcastChannelLike,
  type CreateUpdateStreamOptions,
  type LockManagerLike,
  type SharedStreamOptions,
} from "./stream/shared.js";
export { UpdateStream, type HeadersOption, type StreamLogger, type UpdateStreamOptions } from "./stream/stream.js";
export type { Watched } from "./watch.js";
