// Wire protocol v1 (see docs/js.md and the server's DESIGN): the frames a refetch server sends and
// the events this package hands to its listeners.
import type { Watched } from "./watch.js";

/**
 * Augment to narrow update types everywhere in this package:
 *
 * ```ts
 * declare module "refetch-sse" {
 *   interface Register { updateType: "projects" | "progress" }
 * }
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface Register {}

export type UpdateType = Register extends { updateType: infer T extends string } ? T : string;

/**
 * The keys a tag or `useAutoRefetch(query, type, { keys })` may name for update type `T`. Augment
 * `Register` with `updateKeys: { compute: "eu-1" | "us-1"; progress: never }` to check them: a
 * type mapped to `never` takes no keys. Default (and for a type not in the map): string or number.
 */
export type UpdateKey<T extends string = UpdateType> = Register extends { updateKeys: infer M }
  ? T extends keyof M
    ? M[T] & (string | number)
    : string | number
  : string | number;

/** One changed thing: a whole type, or only some keys of it. */
export interface Update {
  type: UpdateType;
  keys?: string[];
}

/**
 * `error`: the server gave a final answer (400, 403, ...) that retrying soon cannot change; the
 * stream retries slowly (a deploy may fix it) and `error` on the source says what it was.
 */
export type StreamStatus = "connecting" | "open" | "reconnecting" | "closed" | "unauthorized" | "error";

/** A final answer of the server, as the source reports it with status "error" or "unauthorized". */
export interface StreamFailure {
  /** The HTTP status, e.g. 400 or 403. */
  status: number;
  /** The server's `error` code, e.g. "unknown_type" or "forbidden_type"; null if it sent none. */
  code: string | null;
  /** The server's human `detail`, or the start of the body. */
  detail: string;
}

/** What listeners receive. `invalidate-all` means: refetch everything you show. */
export type UpdateEvent =
  | { kind: "invalidate"; updates: Update[]; cursor: string | null }
  | { kind: "invalidate-all"; reason: string; cursor: string | null };

export interface HelloData {
  cursor: string;
  heartbeat: number;
  types: string[];
  /** The types whose shown keys the server wants (`watch=`): those it polls per key on demand. */
  watch: string[];
}

/** One frame as received, for a debug view. */
export interface FrameLogEntry {
  at: number;
  event: string;
  id?: string;
  data: string;
}

export type UpdateListener = (event: UpdateEvent) => void;
export type StatusListener = (status: StreamStatus) => void;
export type FrameListener = (frame: FrameLogEntry) => void;

/** What both the single-tab stream and the cross-tab stream offer. */
export interface UpdateSource {
  readonly status: StreamStatus;
  readonly cursor: string | null;
  /** What the server answered when status is "error" or "unauthorized"; null otherwise. */
  readonly failure?: StreamFailure | null;
  /** The most recent frames, oldest first. */
  readonly log: readonly FrameLogEntry[];
  /** Starts connecting; calling it again does nothing. */
  start(): void;
  /** Stops for good: no more events, status "closed". */
  close(): void;
  /** Reconnects now, also after "unauthorized" (e.g. once the user signed in again). */
  reconnect(): void;
  subscribe(listener: UpdateListener): () => void;
  onStatus(listener: StatusListener): () => void;
  onFrame(listener: FrameListener): () => void;
  /**
   * Says which keys this client shows (sent as `watch=` on the stream's URL, so the server polls
   * only those); a change reconnects the stream from its cursor, at most once per `watchDelayMs`.
   * Optional: a source without it simply watches whole types.
   */
  watch?(watched: Watched): void;
}

export function parseUpdates(data: unknown): Update[] | null {
  if (typeof data !== "object" || data === null) return null;
  const updates = (data as { updates?: unknown }).updates;
  if (!Array.isArray(updates)) return null;
  const out: Update[] = [];
  for (const item of updates) {
    if (typeof item !== "object" || item === null) return null;
    const { type, keys } = item as { type?: unknown; keys?: unknown };
    if (typeof type !== "string") return null;
    if (keys === undefined || keys === null) {
      out.push({ type: type as UpdateType });
      continue;
    }
    if (!Array.isArray(keys)) return null;
    out.push({ type: type as UpdateType, keys: keys.map(String) });
  }
  return out;
}

export function parseHello(data: unknown): HelloData | null {
  if (typeof data !== "object" || data === null) return null;
  const { cursor, heartbeat, types, watch } = data as Record<string, unknown>;
  if (typeof heartbeat !== "number" || !(heartbeat > 0)) return null;
  return {
    cursor: typeof cursor === "string" ? cursor : String(cursor ?? ""),
    heartbeat,
    types: strings(types),
    watch: strings(watch),
  };
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [];
}
