import {
  type FrameListener,
  type FrameLogEntry,
  type StatusListener,
  type StreamStatus,
  type UpdateEvent,
  type UpdateListener,
  type UpdateSource,
} from "./protocol.js";
import { UpdateStream, type UpdateStreamOptions } from "./stream.js";

/** The part of the Web Locks API this package uses (so tests can pass a fake). */
export interface LockManagerLike {
  request(
    name: string,
    options: { signal?: AbortSignal },
    callback: (lock: unknown) => Promise<unknown>,
  ): Promise<unknown>;
}

export interface BroadcastChannelLike {
  postMessage(message: unknown): void;
  close(): void;
  onmessage: ((event: MessageEvent) => void) | null;
}

export type BroadcastChannelConstructor = new (name: string) => BroadcastChannelLike;

export interface SharedStreamOptions extends UpdateStreamOptions {
  /** Lock and channel name; tabs with the same name share one connection. Default from url+types. */
  channelName?: string;
  locks?: LockManagerLike;
  BroadcastChannel?: BroadcastChannelConstructor;
}

type RelayMessage =
  | { t: "event"; event: UpdateEvent; cursor: string | null }
  | { t: "status"; status: StreamStatus; cursor: string | null }
  | { t: "frame"; frame: FrameLogEntry; cursor: string | null }
  | { t: "state"; status: StreamStatus; cursor: string | null; log: FrameLogEntry[] }
  | { t: "sync" }
  | { t: "reconnect" };

/**
 * One connection per browser: the tab holding a Web Lock is the leader and runs an UpdateStream;
 * it relays every event, status change and frame over a BroadcastChannel. The lock is released
 * when the leader's tab goes away, the next tab in the lock's queue takes over and resumes from
 * the last cursor it heard, so no update falls between the two.
 */
export class SharedUpdateStream implements UpdateSource {
  readonly #options: SharedStreamOptions;
  readonly #locks: LockManagerLike;
  readonly #Channel: BroadcastChannelConstructor;
  readonly #name: string;
  readonly #logger: Pick<Console, "warn" | "error">;
  readonly #logSize: number;
  readonly #listeners = new Set<UpdateListener>();
  readonly #statusListeners = new Set<StatusListener>();
  readonly #frameListeners = new Set<FrameListener>();
  readonly #lockAbort = new AbortController();

  #channel: BroadcastChannelLike | null = null;
  #inner: UpdateStream | null = null;
  #release: (() => void) | null = null;
  #status: StreamStatus = "connecting";
  #cursor: string | null;
  #log: FrameLogEntry[] = [];
  #heardLeader = false;
  #started = false;
  #closed = false;

  constructor(options: SharedStreamOptions) {
    const locks = options.locks ?? webLocks();
    const Channel = options.BroadcastChannel ?? globalBroadcastChannel();
    if (!locks || !Channel) {
      throw new TypeError(
        "SharedUpdateStream needs the Web Locks API and BroadcastChannel; use createUpdateStream() to fall back",
      );
    }
    this.#options = options;
    this.#locks = locks;
    this.#Channel = Channel;
    this.#name = options.channelName ?? defaultChannelName(options);
    this.#logger = options.logger ?? console;
    this.#logSize = options.logSize ?? 100;
    this.#cursor = typeof options.cursor === "string" ? options.cursor : null;
  }

  get status(): StreamStatus {
    return this.#status;
  }

  get cursor(): string | null {
    return this.#cursor;
  }

  get log(): readonly FrameLogEntry[] {
    return this.#log;
  }

  /** Whether this tab currently holds the connection. */
  get isLeader(): boolean {
    return this.#inner !== null;
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const channel = new this.#Channel(this.#name);
    channel.onmessage = (event) => this.#receive(event.data as RelayMessage);
    this.#channel = channel;
    this.#locks
      .request(this.#name, { signal: this.#lockAbort.signal }, () => this.#lead())
      .catch((error: unknown) => {
        if (this.#closed) return;
        this.#logger.error("refetch: could not take part in the tab election", error);
      });
    this.#post({ t: "sync" });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#lockAbort.abort();
    const inner = this.#inner;
    this.#inner = null;
    if (inner) {
      // Followers see "reconnecting" until the next leader speaks, not a "closed" that is not theirs.
      this.#post({ t: "status", status: "reconnecting", cursor: this.#cursor });
      inner.close();
    }
    this.#release?.();
    this.#channel?.close();
    this.#channel = null;
    this.#setStatus("closed");
  }

  reconnect(): void {
    if (this.#closed) return;
    if (this.#inner) this.#inner.reconnect();
    else this.#post({ t: "reconnect" });
  }

  subscribe(listener: UpdateListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  onStatus(listener: StatusListener): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  onFrame(listener: FrameListener): () => void {
    this.#frameListeners.add(listener);
    return () => this.#frameListeners.delete(listener);
  }

  #lead(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const inner = new UpdateStream({
      ...this.#options,
      // The cursor heard from the previous leader, else whatever the app's option says.
      cursor: this.#cursor ?? this.#options.cursor ?? null,
      // A tab that followed a live stream may have shown data that changed since the cursor.
      resume: this.#options.resume === true || this.#heardLeader,
      logger: this.#logger,
    });
    this.#inner = inner;
    inner.subscribe((event) => {
      this.#cursor = inner.cursor;
      this.#post({ t: "event", event, cursor: this.#cursor });
      this.#deliver(event);
    });
    inner.onStatus((status) => {
      this.#cursor = inner.cursor;
      this.#post({ t: "status", status, cursor: this.#cursor });
      this.#setStatus(status);
    });
    inner.onFrame((frame) => {
      this.#cursor = inner.cursor;
      this.#post({ t: "frame", frame, cursor: this.#cursor });
      this.#pushFrame(frame);
    });
    // Taking over from a leader that went away is a reconnect, not a first connect.
    const status = this.#heardLeader ? "reconnecting" : inner.status;
    this.#post({ t: "status", status, cursor: this.#cursor });
    this.#setStatus(status);
    inner.start();
    return new Promise((resolve) => {
      this.#release = resolve;
    });
  }

  #receive(message: RelayMessage): void {
    if (this.#closed || typeof message !== "object" || message === null) return;
    const inner = this.#inner;
    if (inner) {
      // Only the leader answers; another leader cannot exist while it holds the lock.
      if (message.t === "sync") {
        this.#post({ t: "state", status: inner.status, cursor: inner.cursor, log: [...inner.log] });
      } else if (message.t === "reconnect") {
        inner.reconnect();
      }
      return;
    }
    switch (message.t) {
      case "event":
        this.#heard(message.cursor);
        this.#deliver(message.event);
        return;
      case "status":
        this.#heard(message.cursor);
        this.#setStatus(message.status);
        return;
      case "frame":
        this.#heard(message.cursor);
        this.#pushFrame(message.frame);
        return;
      case "state":
        this.#heard(message.cursor);
        this.#log = message.log.slice(-this.#logSize);
        this.#setStatus(message.status);
        return;
      default:
        return;
    }
  }

  #heard(cursor: string | null): void {
    this.#heardLeader = true;
    this.#cursor = cursor;
  }

  #post(message: RelayMessage): void {
    try {
      this.#channel?.postMessage(message);
    } catch (error) {
      this.#logger.error("refetch: could not relay to other tabs", error);
    }
  }

  #deliver(event: UpdateEvent): void {
    for (const listener of [...this.#listeners]) this.#call(listener, event);
  }

  #pushFrame(frame: FrameLogEntry): void {
    this.#log.push(frame);
    if (this.#log.length > this.#logSize) this.#log.splice(0, this.#log.length - this.#logSize);
    for (const listener of [...this.#frameListeners]) this.#call(listener, frame);
  }

  #setStatus(status: StreamStatus): void {
    if (status === this.#status) return;
    this.#status = status;
    for (const listener of [...this.#statusListeners]) this.#call(listener, status);
  }

  #call<T>(listener: (value: T) => void, value: T): void {
    try {
      listener(value);
    } catch (error) {
      this.#logger.error("refetch: a listener threw", error);
    }
  }
}

export interface CreateUpdateStreamOptions extends SharedStreamOptions {
  /** Share one connection between the tabs of a browser where possible. Default true. */
  share?: boolean;
}

/**
 * The stream to use in an app: shared across tabs where the platform has Web Locks and
 * BroadcastChannel, one connection per tab otherwise. Not started: call `start()`.
 */
export function createUpdateStream(options: CreateUpdateStreamOptions): UpdateSource {
  const { share = true, ...rest } = options;
  const locks = rest.locks ?? webLocks();
  const Channel = rest.BroadcastChannel ?? globalBroadcastChannel();
  if (share && locks && Channel) {
    return new SharedUpdateStream({ ...rest, locks, BroadcastChannel: Channel });
  }
  return new UpdateStream(rest);
}

function webLocks(): LockManagerLike | undefined {
  const nav = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator;
  return nav?.locks && typeof nav.locks.request === "function" ? nav.locks : undefined;
}

function globalBroadcastChannel(): BroadcastChannelConstructor | undefined {
  const Channel = (globalThis as { BroadcastChannel?: unknown }).BroadcastChannel;
  return typeof Channel === "function" ? (Channel as BroadcastChannelConstructor) : undefined;
}

function defaultChannelName(options: UpdateStreamOptions): string {
  const types = options.types ? [...options.types].sort().join(",") : "*";
  return `refetch:${String(options.url)}?types=${types}`;
}
