import type { UpdateSource } from "../protocol.js";
import { parseRelayMessage, RELAY_VERSION, type RelayMessage } from "./relay.js";
import { SourceBase } from "./source-base.js";
import { UpdateStream, type StreamLogger, type UpdateStreamOptions } from "./stream.js";
import { NOTHING_WATCHED, unionWatched, watchedFromJson, watchedToJson, type Watched } from "../watch.js";

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
  /**
   * Lock and channel name; tabs with the same name share one connection. Default: from the relay
   * version, url, types, `credentials` and a hash of the request headers (per-tab tokens), so
   * tabs of another deploy or with other credentials never share a stream.
   */
  channelName?: string;
  locks?: LockManagerLike;
  BroadcastChannel?: BroadcastChannelConstructor;
}

// What #post takes: a relay message without its version, which #post adds.
type Outgoing = RelayMessage extends infer M ? (M extends RelayMessage ? Omit<M, "v"> : never) : never;

/**
 * One connection per browser: the tab holding a Web Lock is the leader and runs an UpdateStream;
 * it relays every event, status change and frame over a BroadcastChannel. The lock is released
 * when the leader's tab goes away, the next tab in the lock's queue takes over and resumes from
 * the last cursor it heard, so no update falls between the two.
 */
export class SharedUpdateStream extends SourceBase implements UpdateSource {
  readonly #options: SharedStreamOptions;
  readonly #locks: LockManagerLike;
  readonly #Channel: BroadcastChannelConstructor;
  #name: string;
  readonly #logger: StreamLogger;
  readonly #lockAbort = new AbortController();

  #channel: BroadcastChannelLike | null = null;
  #inner: UpdateStream | null = null;
  #release: (() => void) | null = null;
  #cursor: string | null;
  #heardLeader = false;
  #started = false;
  #closed = false;
  // What this tab watches, and (while leading) what each follower tab said it watches.
  readonly #tab = Math.random().toString(36).slice(2) + Date.now().toString(36);
  #watched: Watched;
  readonly #followers = new Map<string, Watched>();

  constructor(options: SharedStreamOptions) {
    const locks = options.locks ?? webLocks();
    const Channel = options.BroadcastChannel ?? globalBroadcastChannel();
    if (!locks || !Channel) {
      throw new TypeError(
        "SharedUpdateStream needs the Web Locks API and BroadcastChannel; use createUpdateStream() to fall back",
      );
    }
    super(options.logger ?? console, options.logSize ?? 100);
    this.#options = options;
    this.#locks = locks;
    this.#Channel = Channel;
    this.#name = options.channelName ?? "";
    this.#logger = options.logger ?? console;
    this.#cursor = typeof options.cursor === "string" ? options.cursor : null;
    this.#watched = options.watched ?? NOTHING_WATCHED;
  }

  /**
   * This tab's watched keys. The leader's connection watches the union of every tab's (a tab that
   * goes away without closing keeps its keys watched until the leader changes: more polling, never
   * less).
   */
  watch(watched: Watched): void {
    this.#watched = watched;
    if (this.#inner) this.#inner.watch(this.#allWatched());
    else if (this.#started && !this.#closed) this.#postWatch();
  }

  #allWatched(): Watched {
    return this.#followers.size === 0 ? this.#watched : unionWatched([this.#watched, ...this.#followers.values()]);
  }

  #postWatch(): void {
    this.#post({ t: "watch", tab: this.#tab, watched: watchedToJson(this.#watched) });
  }

  get cursor(): string | null {
    return this.#cursor;
  }

  /** Whether this tab currently holds the connection. */
  get isLeader(): boolean {
    return this.#inner !== null;
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    void this.#join();
  }

  async #join(): Promise<void> {
    if (!this.#name) {
      let key = "";
      try {
        key = await credentialsKey(this.#options);
      } catch (error) {
        this.#logger.error("refetch: the headers option failed; sharing the stream by url alone", error);
      }
      this.#name = `${defaultChannelName(this.#options)}#${key}`;
    }
    if (this.#closed) return;
    const channel = new this.#Channel(this.#name);
    channel.onmessage = (event) => {
      const message = parseRelayMessage(event.data);
      if (message) this.#receive(message);
    };
    this.#channel = channel;
    this.#locks
      .request(this.#name, { signal: this.#lockAbort.signal }, () => this.#lead())
      .catch((error: unknown) => {
        if (this.#closed) return;
        this.#logger.error("refetch: could not take part in the tab election", error);
      });
    this.#post({ t: "sync" });
    if (this.#watched.size > 0) this.#postWatch();
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
    } else {
      this.#post({ t: "watch", tab: this.#tab, watched: null });
    }
    this.#release?.();
    this.#channel?.close();
    this.#channel = null;
    this.setStatus("closed");
  }

  reconnect(): void {
    if (this.#closed) return;
    if (this.#inner) this.#inner.reconnect();
    else this.#post({ t: "reconnect" });
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
      watched: this.#watched,
    });
    this.#inner = inner;
    // A leader that closed itself still hears its inner stream's "closed": that is not news for
    // the followers, who wait for the next leader (they were told "reconnecting").
    const current = () => this.#inner === inner;
    inner.subscribe((event) => {
      if (!current()) return;
      this.#cursor = inner.cursor;
      this.#post({ t: "event", event, cursor: this.#cursor });
      this.emit(event);
    });
    inner.onStatus((status) => {
      if (!current()) return;
      this.#cursor = inner.cursor;
      this.#post({ t: "status", status, cursor: this.#cursor });
      this.setStatus(status);
    });
    inner.onFrame((frame) => {
      if (!current()) return;
      this.#cursor = inner.cursor;
      this.#post({ t: "frame", frame, cursor: this.#cursor });
      this.pushFrame(frame);
    });
    // Taking over from a leader that went away is a reconnect, not a first connect.
    const status = this.#heardLeader ? "reconnecting" : inner.status;
    this.#post({ t: "status", status, cursor: this.#cursor });
    this.setStatus(status);
    inner.start();
    // The followers' keys went with the previous leader: ask again (the stream switches once they answer).
    this.#post({ t: "watch-sync" });
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
      } else if (message.t === "watch") {
        const watched = message.watched === null ? null : watchedFromJson(message.watched);
        if (watched === null || watched.size === 0) this.#followers.delete(message.tab);
        else this.#followers.set(message.tab, watched);
        inner.watch(this.#allWatched());
      }
      return;
    }
    switch (message.t) {
      case "watch-sync":
        if (this.#watched.size > 0) this.#postWatch();
        return;
      case "event":
        this.#heard(message.cursor);
        this.emit(message.event);
        return;
      case "status":
        this.#heard(message.cursor);
        this.setStatus(message.status);
        return;
      case "frame":
        this.#heard(message.cursor);
        this.pushFrame(message.frame);
        return;
      case "state":
        this.#heard(message.cursor);
        this.restoreLog(message.log);
        this.setStatus(message.status);
        return;
      default:
        return;
    }
  }

  #heard(cursor: string | null): void {
    this.#heardLeader = true;
    this.#cursor = cursor;
  }

  #post(message: Outgoing): void {
    try {
      this.#channel?.postMessage({ ...message, v: RELAY_VERSION });
    } catch (error) {
      this.#logger.error("refetch: could not relay to other tabs", error);
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
  return `refetch:v${RELAY_VERSION}:${String(options.url)}?types=${types}`;
}

/**
 * A short hash of what authenticates the stream (credentials mode and request headers), so two
 * tabs share a connection only when they would open the same one. Not a secret: the name never
 * leaves the origin, but a raw token does not belong in it.
 */
async function credentialsKey(options: UpdateStreamOptions): Promise<string> {
  const option = options.headers;
  const headers = new Headers(typeof option === "function" ? await option() : option);
  const parts: string[] = [options.credentials ?? "same-origin"];
  headers.forEach((value, name) => {
    if (name !== "accept" && name !== "last-event-id") parts.push(`${name}:${value}`);
  });
  return fnv1a(parts.sort().join("\n"));
}

function fnv1a(text: string): string {
  // Two 32-bit FNV-1a passes with different seeds: 64 bits, enough to tell tokens apart.
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    a = Math.imul(a ^ code, 0x01000193) >>> 0;
    b = Math.imul(b ^ code, 0x01000193 ^ 0x27d4eb2d) >>> 0;
  }
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}
