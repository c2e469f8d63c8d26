// The messages tabs exchange over the BroadcastChannel of a SharedUpdateStream. Versioned and
// checked on receipt: a tab of another deploy (or anything else on the channel) is ignored, never
// trusted, and cannot crash or confuse this one.
import { parseUpdates, type FrameLogEntry, type StreamStatus, type UpdateEvent } from "../protocol.js";
import { watchedFromJson, type WatchedJson } from "../watch.js";

/** Bumped whenever a message's shape changes; it is part of the channel name too. */
export const RELAY_VERSION = 3;

export type RelayMessage =
  | { v: typeof RELAY_VERSION; t: "event"; event: UpdateEvent; cursor: string | null }
  | { v: typeof RELAY_VERSION; t: "status"; status: StreamStatus; cursor: string | null }
  | { v: typeof RELAY_VERSION; t: "frame"; frame: FrameLogEntry; cursor: string | null }
  | { v: typeof RELAY_VERSION; t: "state"; status: StreamStatus; cursor: string | null; log: FrameLogEntry[] }
  | { v: typeof RELAY_VERSION; t: "sync" }
  | { v: typeof RELAY_VERSION; t: "reconnect" }
  // A follower's watched keys (null: it left), and the leader asking every follower for them.
  | { v: typeof RELAY_VERSION; t: "watch"; tab: string; watched: WatchedJson | null }
  | { v: typeof RELAY_VERSION; t: "watch-sync" };

// `closed` is never relayed: only a tab itself decides that it is closed.
const RELAYED_STATUSES: ReadonlySet<string> = new Set(["connecting", "open", "reconnecting", "unauthorized", "error"]);

type Loose = Record<string, unknown>;

const isCursor = (value: unknown): value is string | null => value === null || typeof value === "string";

function parseFrame(value: unknown): FrameLogEntry | null {
  if (typeof value !== "object" || value === null) return null;
  const { at, event, data, id } = value as Loose;
  if (typeof at !== "number" || typeof event !== "string" || typeof data !== "string") return null;
  if (id !== undefined && typeof id !== "string") return null;
  return id === undefined ? { at, event, data } : { at, event, data, id };
}

function parseEvent(value: unknown): UpdateEvent | null {
  if (typeof value !== "object" || value === null) return null;
  const { kind, reason, cursor } = value as Loose;
  if (!isCursor(cursor)) return null;
  if (kind === "invalidate-all") return typeof reason === "string" ? { kind, reason, cursor } : null;
  if (kind !== "invalidate") return null;
  const updates = parseUpdates(value);
  return updates ? { kind, updates, cursor } : null;
}

/** The message, or null for anything this version does not understand. */
export function parseRelayMessage(data: unknown): RelayMessage | null {
  if (typeof data !== "object" || data === null) return null;
  const message = data as Loose;
  if (message.v !== RELAY_VERSION) return null;
  const v = RELAY_VERSION;
  switch (message.t) {
    case "sync":
    case "reconnect":
    case "watch-sync":
      return { v, t: message.t };
    case "watch": {
      const { tab, watched } = message;
      if (typeof tab !== "string" || (watched !== null && watchedFromJson(watched) === null)) return null;
      return { v, t: "watch", tab, watched: watched as WatchedJson | null };
    }
    case "event": {
      const event = parseEvent(message.event);
      return event && isCursor(message.cursor) ? { v, t: "event", event, cursor: message.cursor } : null;
    }
    case "status": {
      const { status, cursor } = message;
      return typeof status === "string" && RELAYED_STATUSES.has(status) && isCursor(cursor)
        ? { v, t: "status", status: status as StreamStatus, cursor }
        : null;
    }
    case "frame": {
      const frame = parseFrame(message.frame);
      return frame && isCursor(message.cursor) ? { v, t: "frame", frame, cursor: message.cursor } : null;
    }
    case "state": {
      const { status, cursor, log } = message;
      if (typeof status !== "string" || !RELAYED_STATUSES.has(status) || !isCursor(cursor) || !Array.isArray(log)) {
        return null;
      }
      const frames = log.map(parseFrame);
      if (frames.some((frame) => frame === null)) return null;
      return { v, t: "state", status: status as StreamStatus, cursor, log: frames as FrameLogEntry[] };
    }
    default:
      return null;
  }
}
