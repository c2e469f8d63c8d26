import type {
  FrameListener,
  FrameLogEntry,
  StatusListener,
  StreamStatus,
  UpdateEvent,
  UpdateListener,
  UpdateSource,
} from "../src/protocol.js";
import type { LockManagerLike } from "../src/stream/shared.js";

/** One request the client made to the fake server, with a writable event stream behind it. */
export interface FakeConnection {
  url: URL;
  headers: Headers;
  credentials: RequestCredentials | undefined;
  signal: AbortSignal;
  /** Resolves the fetch with the given response (default: 200 text/event-stream). */
  respond(status?: number, body?: string, contentType?: string): void;
  write(text: string | Uint8Array): void;
  end(): void;
  readonly aborted: boolean;
}

/**
 * A fetch that hands every request to the test: responses are sent when the test says so, so
 * timing is fully in the test's hands (and fake timers stay in charge).
 */
export class FakeServer {
  readonly connections: FakeConnection[] = [];
  /** Set to answer every new request at once with an open event stream. */
  autoRespond = true;

  fetch = (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const signal = init.signal!;
    const encoder = new TextEncoder();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let closed = false;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
    });
    return new Promise<Response>((resolve, reject) => {
      const abortError = () => new DOMException("The operation was aborted.", "AbortError");
      let responded = false;
      const connection: FakeConnection = {
        url: new URL(String(input)),
        headers: new Headers(init.headers),
        credentials: init.credentials,
        signal,
        respond(status = 200, text?: string, contentType = "text/event-stream") {
          responded = true;
          if (status !== 200 || text !== undefined) {
            resolve(new Response(text ?? "", { status, headers: { "content-type": contentType } }));
            return;
          }
          resolve(new Response(body, { status, headers: { "content-type": contentType } }));
        },
        write(chunk) {
          if (closed) throw new Error("connection is closed");
          controller.enqueue(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
        },
        end() {
          if (closed) return;
          closed = true;
          controller.close();
        },
        get aborted() {
          return signal.aborted;
        },
      };
      signal.addEventListener("abort", () => {
        if (!responded) reject(abortError());
        if (!closed) {
          closed = true;
          controller.error(abortError());
        }
      });
      this.connections.push(connection);
      if (this.autoRespond) connection.respond();
    });
  };

  get last(): FakeConnection {
    const connection = this.connections.at(-1);
    if (!connection) throw new Error("no connection yet");
    return connection;
  }
}

export function frame(event: string, data: unknown, id?: string): string {
  const idLine = id === undefined ? "" : `id: ${id}\n`;
  return `event: ${event}\n${idLine}data: ${JSON.stringify(data)}\n\n`;
}

export function hello(
  cursor: string,
  options: { id?: boolean; heartbeat?: number; retry?: number; types?: string[]; watch?: string[] } = {},
) {
  const retry = options.retry === undefined ? "" : `retry: ${options.retry}\n`;
  const data = { cursor, heartbeat: options.heartbeat ?? 15, types: options.types ?? ["projects", "progress"], watch: options.watch };
  return retry + frame("hello", data, options.id === false ? undefined : cursor);
}

/** Lets promise chains (fetch, stream reads) run without moving fake time. */
export async function settle(rounds = 50): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

export function silentLogger() {
  return { warn: () => {}, error: () => {} };
}

/** An UpdateSource the test drives by hand. */
export class ManualSource implements UpdateSource {
  status: StreamStatus = "connecting";
  cursor: string | null = null;
  log: FrameLogEntry[] = [];
  started = 0;
  closed = 0;
  readonly #listeners = new Set<UpdateListener>();
  readonly #status = new Set<StatusListener>();
  readonly #frames = new Set<FrameListener>();

  start(): void {
    this.started++;
  }
  close(): void {
    this.closed++;
    this.setStatus("closed");
  }
  reconnect(): void {}
  subscribe(listener: UpdateListener) {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  onStatus(listener: StatusListener) {
    this.#status.add(listener);
    return () => this.#status.delete(listener);
  }
  onFrame(listener: FrameListener) {
    this.#frames.add(listener);
    return () => this.#frames.delete(listener);
  }
  emit(event: UpdateEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
  setStatus(status: StreamStatus): void {
    this.status = status;
    for (const listener of this.#status) listener(status);
  }
  get listenerCount(): number {
    return this.#listeners.size;
  }
}

/**
 * Exclusive locks granted in request order, like navigator.locks.request(name, {signal}, cb): Node 20
 * has no navigator.locks (its BroadcastChannel is real and delivers between instances).
 */
export class FakeLocks implements LockManagerLike {
  readonly #queues = new Map<string, Array<() => void>>();
  readonly #held = new Set<string>();

  request(name: string, options: { signal?: AbortSignal }, callback: (lock: unknown) => Promise<unknown>) {
    return new Promise<unknown>((resolve, reject) => {
      const grant = () => {
        this.#held.add(name);
        Promise.resolve()
          .then(() => callback({ name }))
          .then(resolve, reject)
          .finally(() => this.#release(name));
      };
      if (!this.#held.has(name)) {
        grant();
        return;
      }
      const queue = this.#queues.get(name) ?? [];
      this.#queues.set(name, queue);
      queue.push(grant);
      options.signal?.addEventListener("abort", () => {
        const index = queue.indexOf(grant);
        if (index >= 0) queue.splice(index, 1);
        reject(new DOMException("aborted", "AbortError"));
      });
    });
  }

  #release(name: string): void {
    const next = this.#queues.get(name)?.shift();
    if (next) next();
    else this.#held.delete(name);
  }
}
