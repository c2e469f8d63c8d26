import { createParser, type EventSourceMessage } from "eventsource-parser";

import { fullJitterDelay, type BackoffOptions } from "./backoff.js";
import {
  parseHello,
  parseUpdates,
  type FrameListener,
  type FrameLogEntry,
  type StatusListener,
  type StreamStatus,
  type UpdateEvent,
  type UpdateListener,
  type UpdateSource,
  type UpdateType,
} from "./protocol.js";

export type HeadersOption = HeadersInit | (() => HeadersInit | Promise<HeadersInit>);

export interface UpdateStreamOptions {
  /** The endpoint, e.g. "/api/updates". Relative URLs resolve against `location` in browsers. */
  url: string | URL;
  /** Only these update types (sent as `types=a,b`). Default: all the server allows. */
  types?: readonly UpdateType[];
  /** Extra request headers, or a function returning them (called on every connect: fresh tokens). */
  headers?: HeadersOption;
  /** Default "same-origin": cookies go along for the same origin, as with EventSource. */
  credentials?: RequestCredentials;
  backoff?: BackoffOptions;
  /** How many recent frames `log` keeps. Default 100. */
  logSize?: number;
  /** Heartbeat assumed until `hello` says otherwise, in seconds. Default 15. */
  heartbeat?: number;
  /** Resume after this cursor on the first connect. */
  cursor?: string | null;
  /**
   * Treat the first connect as a reconnect: if the server cannot resume, emit "invalidate-all".
   * Used when a tab takes over the shared stream from another one.
   */
  resume?: boolean;
  fetch?: typeof fetch;
  random?: () => number;
  logger?: Pick<Console, "warn" | "error">;
}

type Outcome = "ended" | "error" | "unauthorized" | "superseded";

const MIN_RETRY_MS = 100;

/** One SSE connection over `fetch`, kept alive for as long as it is not closed. */
export class UpdateStream implements UpdateSource {
  readonly #options: UpdateStreamOptions;
  readonly #fetch: typeof fetch;
  readonly #random: () => number;
  readonly #logger: Pick<Console, "warn" | "error">;
  readonly #logSize: number;
  readonly #maxMs: number;
  readonly #listeners = new Set<UpdateListener>();
  readonly #statusListeners = new Set<StatusListener>();
  readonly #frameListeners = new Set<FrameListener>();

  #status: StreamStatus = "connecting";
  #cursor: string | null;
  #log: FrameLogEntry[] = [];
  #started = false;
  #closed = false;
  // Bumped by reconnect()/close(): a connection loop that sees a newer generation stops.
  #generation = 0;
  #attempt = 0;
  #endedConnections = 0;
  #retryMs: number;
  #heartbeatMs: number;
  #controller: AbortController | null = null;
  #wake: (() => void) | null = null;

  constructor(options: UpdateStreamOptions) {
    if (!options || !options.url) {
      throw new TypeError('UpdateStream needs a url, e.g. new UpdateStream({ url: "/api/updates" })');
    }
    if (!options.fetch && typeof globalThis.fetch !== "function") {
      throw new TypeError("UpdateStream needs fetch: pass options.fetch on a platform without it");
    }
    // Browsers reject `fetch` called with any `this` but the window ("Illegal invocation"),
    // so the global one is never stored as a method of ours.
    const fetchImpl: typeof fetch =
      options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init));
    this.#options = options;
    this.#fetch = fetchImpl;
    this.#random = options.random ?? Math.random;
    this.#logger = options.logger ?? console;
    this.#logSize = options.logSize ?? 100;
    this.#retryMs = options.backoff?.initialMs ?? 1000;
    this.#maxMs = options.backoff?.maxMs ?? 30_000;
    this.#heartbeatMs = (options.heartbeat ?? 15) * 1000;
    this.#cursor = options.cursor ?? null;
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

  /** The watchdog's limit: about twice the heartbeat the server announced. */
  get watchdogMs(): number {
    return this.#heartbeatMs * 2;
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    void this.#run(this.#generation);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#generation++;
    this.#controller?.abort();
    this.#wake?.();
    this.#setStatus("closed");
  }

  reconnect(): void {
    if (this.#closed) return;
    this.#started = true;
    this.#generation++;
    this.#controller?.abort();
    this.#wake?.();
    this.#attempt = 0;
    this.#setStatus(this.#endedConnections > 0 ? "reconnecting" : "connecting");
    void this.#run(this.#generation);
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

  async #run(generation: number): Promise<void> {
    while (generation === this.#generation) {
      let outcome: Outcome;
      try {
        outcome = await this.#connectOnce(generation);
      } catch (error) {
        // #connectOnce handles its own errors; this guards the loop against a bug in a callback.
        this.#logger.error("refetch: connection loop failed", error);
        outcome = "error";
      }
      if (generation !== this.#generation || outcome === "superseded") return;
      this.#endedConnections++;
      if (outcome === "unauthorized") {
        this.#setStatus("unauthorized");
        return;
      }
      this.#setStatus("reconnecting");
      const delay = fullJitterDelay(this.#attempt++, this.#retryMs, this.#maxMs, this.#random);
      await this.#sleep(delay);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
    });
  }

  async #connectOnce(generation: number): Promise<Outcome> {
    const controller = new AbortController();
    this.#controller = controller;
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        timedOut = true;
        this.#logger.warn(`refetch: no frame for ${this.watchdogMs} ms, reconnecting`);
        controller.abort();
      }, this.watchdogMs);
    };
    const current = () => generation === this.#generation;
    arm();
    try {
      const sentCursor = this.#cursor;
      const response = await this.#fetch(this.#requestUrl(), {
        method: "GET",
        headers: await this.#requestHeaders(sentCursor),
        credentials: this.#options.credentials ?? "same-origin",
        signal: controller.signal,
      });
      if (!current()) {
        void response.body?.cancel().catch(() => {});
        return "superseded";
      }
      if (response.status === 401) {
        this.#logger.warn(`refetch: 401 from the update stream: ${await errorText(response)}`);
        return "unauthorized";
      }
      if (!response.ok) {
        this.#logger.warn(`refetch: ${response.status} from the update stream: ${await errorText(response)}`);
        return "error";
      }
      const contentType = response.headers.get("content-type") ?? "";
      if (!contentType.includes("text/event-stream") || !response.body) {
        void response.body?.cancel().catch(() => {});
        this.#logger.warn(`refetch: expected text/event-stream, got "${contentType}"`);
        return "error";
      }
      const parser = createParser({
        onEvent: (message) => {
          if (!current()) return;
          this.#handle(message, sentCursor);
          arm();
        },
        onComment: () => {
          if (current()) arm();
        },
        onRetry: (ms) => {
          this.#retryMs = Math.max(MIN_RETRY_MS, ms);
        },
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done || !current()) break;
          parser.feed(decoder.decode(value, { stream: true }));
        }
      } finally {
        reader.cancel().catch(() => {});
      }
      return current() ? "ended" : "superseded";
    } catch (error) {
      if (!current()) return "superseded";
      if (!timedOut) this.#logger.warn("refetch: update stream failed", error);
      return "error";
    } finally {
      clearTimeout(watchdog);
      controller.abort();
      if (this.#controller === controller) this.#controller = null;
    }
  }

  #requestUrl(): string {
    const base = (globalThis as { location?: { href?: string } }).location?.href;
    const url = new URL(this.#options.url, base);
    const types = this.#options.types;
    if (types && types.length > 0) url.searchParams.set("types", types.join(","));
    return url.toString();
  }

  async #requestHeaders(cursor: string | null): Promise<Headers> {
    const option = this.#options.headers;
    const headers = new Headers(typeof option === "function" ? await option() : option);
    headers.set("Accept", "text/event-stream");
    if (cursor) headers.set("Last-Event-ID", cursor);
    return headers;
  }

  #handle(message: EventSourceMessage, sentCursor: string | null): void {
    const event = message.event ?? "message";
    const entry: FrameLogEntry = { at: Date.now(), event, data: message.data };
    if (message.id !== undefined) entry.id = message.id;
    this.#process(event, message, sentCursor);
    // After processing, so a frame listener (the cross-tab relay) sees the cursor it moved to.
    this.#log.push(entry);
    if (this.#log.length > this.#logSize) this.#log.splice(0, this.#log.length - this.#logSize);
    for (const listener of [...this.#frameListeners]) this.#call(listener, entry);
  }

  #process(event: string, message: EventSourceMessage, sentCursor: string | null): void {
    let data: unknown;
    try {
      data = JSON.parse(message.data);
    } catch {
      data = undefined;
    }
    // An empty `id:` clears the cursor, as in EventSource.
    const id = message.id === undefined ? undefined : message.id || null;

    switch (event) {
      case "hello": {
        const hello = parseHello(data);
        if (hello) this.#heartbeatMs = hello.heartbeat * 1000;
        else this.#logger.warn("refetch: malformed hello frame", message.data);
        this.#attempt = 0;
        // The server sends an id on hello only when it did not resume: anything may have been
        // missed since the previous connection (or since the cursor another tab handed over).
        const notResumed =
          id !== undefined &&
          (sentCursor !== null || this.#options.resume === true || this.#endedConnections > 0);
        if (id !== undefined) this.#cursor = id;
        this.#setStatus("open");
        if (notResumed) this.#emit({ kind: "invalidate-all", reason: "not-resumed", cursor: id });
        return;
      }
      case "invalidate": {
        if (id !== undefined) this.#cursor = id;
        const updates = parseUpdates(data);
        if (updates === null) {
          // Dropping it would leave the client silently stale; refetching everything cannot.
          this.#logger.warn("refetch: malformed invalidate frame", message.data);
          this.#emit({ kind: "invalidate-all", reason: "malformed-frame", cursor: this.#cursor });
        } else if (updates.length > 0) {
          this.#emit({ kind: "invalidate", updates, cursor: this.#cursor });
        }
        return;
      }
      case "resync": {
        if (id !== undefined) this.#cursor = id;
        const reason = (data as { reason?: unknown } | undefined)?.reason;
        this.#emit({
          kind: "invalidate-all",
          reason: typeof reason === "string" ? reason : "resync",
          cursor: this.#cursor,
        });
        return;
      }
      default:
        // ping, and events of later protocol versions, only feed the watchdog.
        return;
    }
  }

  #emit(event: UpdateEvent): void {
    for (const listener of [...this.#listeners]) this.#call(listener, event);
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

async function errorText(response: Response): Promise<string> {
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text) as { error?: unknown };
      if (typeof body.error === "string") return body.error;
    } catch {
      // not JSON: show the raw text
    }
    return text.slice(0, 200);
  } catch {
    return response.statusText;
  }
}
