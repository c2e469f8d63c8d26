import { drainDelay, drainStepDelay, fullJitterDelay, type BackoffOptions } from "./backoff.js";
import {
  parseHello,
  parseUpdates,
  type FrameLogEntry,
  type StreamFailure,
  type UpdateSource,
  type UpdateType,
} from "../protocol.js";
import { SourceBase } from "./source-base.js";
import { createSseParser, type SseMessage } from "./sse.js";
import { NOTHING_WATCHED, sameEntries, watchEntries, type Watched } from "../watch.js";

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
  /**
   * Resume after this cursor on the first connect, or a function asked for one on every connect
   * while the stream has no cursor of its own (e.g. `QueryInvalidator.startCursor`).
   */
  cursor?: string | null | (() => string | null | Promise<string | null>);
  /**
   * Treat the first connect as a reconnect: if the server cannot resume, emit "invalidate-all".
   * Used when a tab takes over the shared stream from another one.
   */
  resume?: boolean;
  fetch?: typeof fetch;
  random?: () => number;
  /** Where problems go. `info` (optional) hears that the stream is back after an outage. */
  logger?: StreamLogger;
  /**
   * The update types whose shown keys the stream sends (`watch=<type>:<key>`): those the server
   * polls per key on demand, e.g. `["compute"]` for `poller("compute", key=region, on_demand=True)`.
   * Default: the types the server's latest `hello` lists (before the first one, every keyed type),
   * so a change of keys of other types never costs a reconnect; `[]`: never (docs/js.md, "Watched keys").
   */
  watchTypes?: readonly UpdateType[];
  /** The keys shown from the start (sent as `watch=` for `watchTypes`); later changes go through `watch()`. */
  watched?: Watched;
  /**
   * A change of the watched keys reconnects the open stream (from its cursor) at most once per
   * this many ms, with every change made meanwhile. Default 100.
   */
  watchDelayMs?: number;
}

export type StreamLogger = Pick<Console, "warn" | "error"> & Partial<Pick<Console, "info">>;

type Outcome = "ended" | "drained" | "error" | "final" | "unauthorized" | "superseded" | "rewatch";

// The server's `retry:` and `heartbeat` are clamped: a 1 ms heartbeat would reconnect many times a
// second, and a huge one overflows setTimeout (2^31 ms) into an immediate timeout.
const MIN_RETRY_MS = 100;
const MIN_HEARTBEAT_S = 1;
const MAX_HEARTBEAT_S = 600;
/** A connection that stayed open this long resets the backoff (unless backoff.stableMs says otherwise). */
const STABLE_MS = 10_000;
const DRAIN_WINDOW_MS = 15_000;
const DRAIN_STEP_MS = 250;

/** The server's refusals of `watch=` (docs/protocol.md): retried at once without it. */
const WATCH_REFUSALS: ReadonlySet<string> = new Set(["malformed_watch", "too_many_watched_keys", "unknown_type"]);

/** 4xx answers that retrying soon cannot change (408 and 429 are worth a normal retry). */
function isFinal(status: number): boolean {
  return status >= 400 && status < 500 && status !== 401 && status !== 408 && status !== 429;
}

/** One SSE connection over `fetch`, kept alive for as long as it is not closed. */
export class UpdateStream extends SourceBase implements UpdateSource {
  readonly #options: UpdateStreamOptions;
  readonly #fetch: typeof fetch;
  readonly #random: () => number;
  readonly #logger: StreamLogger;
  readonly #maxMs: number;

  #failure: StreamFailure | null = null;
  #cursor: string | null;
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
  // Failed attempts since the stream was last open: an outage is one warning when it starts and
  // one info when it ends, not a warning (with a stack trace) per attempt.
  #failedAttempts = 0;
  // The `watch=` entries wanted, and those in the URL of the current attempt (null before it is built).
  #watchEntries: string[];
  #sentEntries: string[] | null = null;
  #watchTimer: ReturnType<typeof setTimeout> | undefined;
  #watched: Watched;
  // The types the server said this stream hears (hello), when `types` does not say: a key of a type
  // the server does not declare would be refused (400 unknown_type) and cost the whole stream.
  #heardTypes: readonly string[] | undefined;
  // The types the latest hello asks keys of (`watch`), when `watchTypes` does not say.
  #listed: readonly string[] | undefined;
  // The server refused the keys sent (a server older than watch=, or bounds of its own): none until they change.
  #watchRefused = false;
  // The server's `reconnect` frame: come back after #drainDelayMs; until #drainUntil (Date.now()
  // time) failed attempts are retried every drainStepMs..2×drainStepMs, not on the backoff.
  #drainDelayMs = 0;
  #drainUntil = 0;

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
    super(options.logger ?? console, options.logSize ?? 100);
    this.#options = options;
    this.#fetch = fetchImpl;
    this.#random = options.random ?? Math.random;
    this.#logger = options.logger ?? console;
    this.#retryMs = options.backoff?.initialMs ?? 1000;
    this.#maxMs = options.backoff?.maxMs ?? 30_000;
    this.#heartbeatMs = clampHeartbeat(options.heartbeat ?? 15) * 1000;
    this.#cursor = typeof options.cursor === "string" ? options.cursor : null;
    this.#watched = options.watched ?? NOTHING_WATCHED;
    this.#watchEntries = this.#entries(this.#watched);
  }

  get cursor(): string | null {
    return this.#cursor;
  }

  /** The `watch=` entries for these keys: of `watchTypes` (else the hello's), of types the stream hears. */
  #entries(watched: Watched): string[] {
    const wanted = this.#options.watchTypes ?? this.#listed;
    const heard = this.#options.types?.length ? this.#options.types : this.#heardTypes;
    const allowed = wanted && heard ? wanted.filter((type) => heard.includes(type)) : (wanted ?? heard);
    return allowed?.length === 0 ? [] : watchEntries(watched, allowed);
  }

  /** The `watch=` values the next connection sends (sorted `type:key`). */
  get watching(): readonly string[] {
    return this.#watchEntries;
  }

  /**
   * Watches these keys from now on. A connection under way that sent other keys is replaced by one
   * that resumes from the stream's cursor (the server replays what changed in between, so nothing
   * is lost), at most once per `watchDelayMs` and without a status change; a stream waiting to
   * reconnect sends them on its next attempt.
   */
  watch(watched: Watched): void {
    this.#watched = watched;
    const entries = this.#entries(watched);
    if (sameEntries(this.#watchEntries, entries)) return;
    this.#watchEntries = entries;
    this.#watchRefused = false;
    if (this.#watchTimer !== undefined || this.#closed) return;
    this.#watchTimer = setTimeout(() => {
      this.#watchTimer = undefined;
      const sent = this.#sentEntries;
      if (this.#closed || this.#controller === null || sent === null || sameEntries(sent, this.#watchEntries)) return;
      // Break before make: the new connection resumes from the cursor, so it replays anything the
      // old one had not delivered yet. Not a failure: no backoff, no status change.
      this.#generation++;
      this.#controller.abort();
      void this.#run(this.#generation);
    }, this.#options.watchDelayMs ?? 100);
  }

  get failure(): StreamFailure | null {
    return this.#failure;
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
    clearTimeout(this.#watchTimer);
    this.#watchTimer = undefined;
    this.#generation++;
    this.#controller?.abort();
    this.#wake?.();
    this.setStatus("closed");
  }

  reconnect(): void {
    if (this.#closed) return;
    this.#started = true;
    this.#generation++;
    this.#controller?.abort();
    this.#wake?.();
    this.#attempt = 0;
    this.setStatus(this.#endedConnections > 0 ? "reconnecting" : "connecting");
    void this.#run(this.#generation);
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
      if (outcome === "rewatch") continue;
      this.#endedConnections++;
      if (outcome === "unauthorized") {
        this.setStatus("unauthorized");
        return;
      }
      if (outcome === "final") {
        // Slowly, not never: a deploy of the server (a new type, new permissions) may fix it.
        this.setStatus("error");
        await this.#sleep(Math.floor(this.#maxMs / 2 + (this.#random() * this.#maxMs) / 2));
        continue;
      }
      this.setStatus("reconnecting");
      await this.#sleep(this.#nextDelay(outcome));
    }
  }

  /**
   * After a drain notice: its delay, then quick steps while the server restarts (connection
   * refused, 502/503 from a proxy); else, and once the drain window is over, the error backoff.
   */
  #nextDelay(outcome: Outcome): number {
    if (outcome === "drained") return this.#drainDelayMs;
    if (Date.now() < this.#drainUntil) {
      return drainStepDelay(this.#options.backoff?.drainStepMs ?? DRAIN_STEP_MS, this.#random);
    }
    return fullJitterDelay(this.#attempt++, this.#retryMs, this.#maxMs, this.#random);
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
    let stable: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    let drained = false;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        timedOut = true;
        this.#outage(`no frame for ${this.watchdogMs} ms`);
        controller.abort();
      }, this.watchdogMs);
    };
    const current = () => generation === this.#generation;
    this.#sentEntries = null;
    arm();
    try {
      const sentCursor = await this.#startCursor();
      if (!current()) return "superseded";
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
      if (!response.ok) {
        const failure = await readFailure(response);
        if (response.status === 400 && this.#sentEntries!.length > 0 && WATCH_REFUSALS.has(failure.code ?? "")) {
          // The stream matters more than its keys: again at once, watching whole types.
          this.#logger.warn(`refetch: watched keys refused (${failure.detail})`);
          this.#watchRefused = true;
          return "rewatch";
        }
        if (response.status === 401 || isFinal(response.status)) {
          // An answer, not an outage: said each time.
          this.#logger.warn(`refetch: ${response.status} from the update stream: ${failure.detail}`);
          this.#failure = failure;
          return response.status === 401 ? "unauthorized" : "final";
        }
        this.#outage(`${response.status} from the update stream: ${failure.detail}`);
        return "error";
      }
      const contentType = response.headers.get("content-type") ?? "";
      if (!contentType.includes("text/event-stream") || !response.body) {
        void response.body?.cancel().catch(() => {});
        this.#outage(`expected text/event-stream, got "${contentType}"`);
        return "error";
      }
      const feed = createSseParser({
        onEvent: (message) => {
          if (!current()) return;
          const before = this.status;
          this.#handle(message, sentCursor);
          // The server ends the stream right after: stop reading now, in case a proxy does not.
          if (message.event === "reconnect") drained = true;
          arm();
          if (before !== "open" && this.status === "open") {
            this.#recovered();
            // Only a connection that stays up resets the backoff: a server that closes right after
            // hello must not be hammered.
            stable = setTimeout(() => {
              if (current()) this.#attempt = 0;
            }, this.#options.backoff?.stableMs ?? STABLE_MS);
          }
        },
        onComment: () => {
          if (current()) arm();
        },
        onRetry: (ms) => {
          this.#retryMs = Math.min(this.#maxMs, Math.max(MIN_RETRY_MS, ms));
        },
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done || !current()) break;
          feed(decoder.decode(value, { stream: true }));
          if (drained) break;
        }
      } finally {
        reader.cancel().catch(() => {});
      }
      if (!current()) return "superseded";
      return drained ? "drained" : "ended";
    } catch (error) {
      if (!current()) return "superseded";
      if (drained) return "drained"; // the server cut rather than ended the stream it drained
      if (!timedOut) this.#outage(`update stream failed: ${describe(error)}`);
      return "error";
    } finally {
      clearTimeout(watchdog);
      clearTimeout(stable);
      controller.abort();
      if (this.#controller === controller) this.#controller = null;
    }
  }

  /** Notes a failed attempt; warns only at the first one since the stream was last open. */
  #outage(reason: string): void {
    if (this.#failedAttempts++ === 0) this.#logger.warn(`refetch: ${reason}; reconnecting (quiet until it is back)`);
  }

  #recovered(): void {
    if (this.#failedAttempts === 0) return;
    const attempts = this.#failedAttempts;
    this.#failedAttempts = 0;
    this.#logger.info?.(`refetch: update stream open again after ${attempts} failed attempt${attempts === 1 ? "" : "s"}`);
  }

  /** The stream's own cursor, else the one the `cursor` option function gives (kept from then on). */
  async #startCursor(): Promise<string | null> {
    const option = this.#options.cursor;
    if (this.#cursor !== null || typeof option !== "function") return this.#cursor;
    try {
      const cursor = await option();
      if (this.#cursor === null && cursor) this.#cursor = cursor;
    } catch (error) {
      this.#logger.error("refetch: the cursor option failed; starting without a cursor", error);
    }
    return this.#cursor;
  }

  #requestUrl(): string {
    const base = (globalThis as { location?: { href?: string } }).location?.href;
    const url = new URL(this.#options.url, base);
    const types = this.#options.types;
    if (types && types.length > 0) url.searchParams.set("types", types.join(","));
    const entries = this.#watchRefused ? [] : this.#watchEntries;
    for (const entry of entries) url.searchParams.append("watch", entry);
    this.#sentEntries = entries;
    return url.toString();
  }

  async #requestHeaders(cursor: string | null): Promise<Headers> {
    const option = this.#options.headers;
    const headers = new Headers(typeof option === "function" ? await option() : option);
    headers.set("Accept", "text/event-stream");
    if (cursor) headers.set("Last-Event-ID", cursor);
    return headers;
  }

  #handle(message: SseMessage, sentCursor: string | null): void {
    const event = message.event ?? "message";
    const entry: FrameLogEntry = { at: Date.now(), event, data: message.data };
    if (message.id !== undefined) entry.id = message.id;
    this.#process(event, message, sentCursor);
    // After processing, so a frame listener (the cross-tab relay) sees the cursor it moved to.
    this.pushFrame(entry);
  }

  #process(event: string, message: SseMessage, sentCursor: string | null): void {
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
        if (hello) {
          this.#heartbeatMs = clampHeartbeat(hello.heartbeat) * 1000;
          if (!this.#options.types && hello.types.length > 0) this.#heardTypes = hello.types;
          if (!this.#options.watchTypes) {
            const listed = (this.#listed = hello.watch);
            // Keys sent of other types change nothing on the server: as good as not sent.
            this.#sentEntries = this.#sentEntries!.filter((entry) => listed.includes(entry.split(":")[0]!));
          }
          // Drops the keys of types the server does not know or want (the switch follows if that changed them).
          this.watch(this.#watched);
        } else this.#logger.warn("refetch: malformed hello frame", message.data);
        this.#failure = null;
        // The server sends an id on hello only when it did not resume: anything may have been
        // missed since the previous connection (or since the cursor another tab handed over).
        const notResumed =
          id !== undefined &&
          (sentCursor !== null || this.#options.resume === true || this.#endedConnections > 0);
        if (id !== undefined) this.#cursor = id;
        this.#drainUntil = 0;
        this.setStatus("open");
        if (notResumed) this.emit({ kind: "invalidate-all", reason: "not-resumed", cursor: id });
        return;
      }
      case "invalidate": {
        if (id !== undefined) this.#cursor = id;
        const updates = parseUpdates(data);
        if (updates === null) {
          // Dropping it would leave the client silently stale; refetching everything cannot.
          this.#logger.warn("refetch: malformed invalidate frame", message.data);
          this.emit({ kind: "invalidate-all", reason: "malformed-frame", cursor: this.#cursor });
        } else if (updates.length > 0) {
          this.emit({ kind: "invalidate", updates, cursor: this.#cursor });
        }
        return;
      }
      case "resync": {
        if (id !== undefined) this.#cursor = id;
        const reason = (data as { reason?: unknown } | undefined)?.reason;
        this.emit({
          kind: "invalidate-all",
          reason: typeof reason === "string" ? reason : "resync",
          cursor: this.#cursor,
        });
        return;
      }
      case "reconnect": {
        // A draining server: come back after its delay (spread over the clients by the server),
        // with the cursor, and retry quickly while it restarts.
        const backoff = this.#options.backoff;
        const step = backoff?.drainStepMs ?? DRAIN_STEP_MS;
        this.#drainDelayMs = drainDelay(data, this.#maxMs) ?? drainStepDelay(step, this.#random);
        this.#drainUntil = Date.now() + (backoff?.drainWindowMs ?? DRAIN_WINDOW_MS);
        return;
      }
      default:
        // ping, and events of later protocol versions, only feed the watchdog.
        return;
    }
  }

}

function clampHeartbeat(seconds: number): number {
  return Math.min(MAX_HEARTBEAT_S, Math.max(MIN_HEARTBEAT_S, seconds));
}

/** The server's JSON error body (docs/protocol.md): `error` code and human `detail`. */
async function readFailure(response: Response): Promise<StreamFailure> {
  let text: string;
  try {
    text = await response.text();
  } catch {
    return { status: response.status, code: null, detail: response.statusText };
  }
  try {
    const body = JSON.parse(text) as { error?: unknown; detail?: unknown };
    const code = typeof body.error === "string" ? body.error : null;
    const detail = typeof body.detail === "string" ? body.detail : (code ?? text.slice(0, 200));
    return { status: response.status, code, detail: code && detail !== code ? `${code}: ${detail}` : detail };
  } catch {
    // not JSON: show the raw text
    return { status: response.status, code: null, detail: text.slice(0, 200) };
  }
}

/** An error's name and message, without the stack: what a console warning needs. */
function describe(error: unknown): string {
  if (error instanceof Error) return error.cause instanceof Error ? `${error.message} (${error.cause.message})` : error.message;
  return String(error);
}
