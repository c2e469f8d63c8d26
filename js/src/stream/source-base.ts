// What both update sources (one tab's UpdateStream, the cross-tab SharedUpdateStream) keep and
// tell their listeners: the status, the recent frames, the update events. A base class, as
// TanStack's caches extend its Subscribable: the listener plumbing is written once.
import type {
  FrameListener,
  FrameLogEntry,
  StatusListener,
  StreamStatus,
  UpdateEvent,
  UpdateListener,
} from "../protocol.js";
import { Subscribable } from "../subscribable.js";

export abstract class SourceBase {
  readonly #updates: Subscribable<UpdateEvent>;
  readonly #statuses: Subscribable<StreamStatus>;
  readonly #frames: Subscribable<FrameLogEntry>;
  readonly #logSize: number;
  #status: StreamStatus = "connecting";
  #log: FrameLogEntry[] = [];

  constructor(logger: Pick<Console, "error">, logSize: number) {
    this.#updates = new Subscribable(logger);
    this.#statuses = new Subscribable(logger);
    this.#frames = new Subscribable(logger);
    this.#logSize = logSize;
  }

  get status(): StreamStatus {
    return this.#status;
  }

  /** The most recent frames, oldest first. */
  get log(): readonly FrameLogEntry[] {
    return this.#log;
  }

  subscribe(listener: UpdateListener): () => void {
    return this.#updates.subscribe(listener);
  }

  onStatus(listener: StatusListener): () => void {
    return this.#statuses.subscribe(listener);
  }

  onFrame(listener: FrameListener): () => void {
    return this.#frames.subscribe(listener);
  }

  protected emit(event: UpdateEvent): void {
    this.#updates.notify(event);
  }

  /** Tells the status listeners, only when it changed. */
  protected setStatus(status: StreamStatus): void {
    if (status === this.#status) return;
    this.#status = status;
    this.#statuses.notify(status);
  }

  protected pushFrame(frame: FrameLogEntry): void {
    this.#log.push(frame);
    if (this.#log.length > this.#logSize) this.#log.splice(0, this.#log.length - this.#logSize);
    this.#frames.notify(frame);
  }

  /** Takes over another tab's log (its most recent frames), without telling the frame listeners. */
  protected restoreLog(frames: FrameLogEntry[]): void {
    this.#log = frames.slice(-this.#logSize);
  }
}
