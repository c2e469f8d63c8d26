// One invalidation pass per burst, for both invalidators: what the stream said since the last
// pass, and the queries (or keys) that join the next pass whatever it says.
import type { Update, UpdateEvent } from "../protocol.js";

/** One pass: `all` when an `invalidate-all` arrived (every tagged query or key is concerned). */
export type Pass<T> = (updates: Update[], all: boolean, targets: Set<T>) => void;

export class Batch<T> {
  readonly #windowMs: () => number;
  readonly #pass: Pass<T>;
  #updates: Update[] = [];
  #all = false;
  #targets = new Set<T>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `windowMs` is read when a window opens (the invalidator's `coalesceMs`, which may change). */
  constructor(windowMs: () => number, pass: Pass<T>) {
    this.#windowMs = windowMs;
    this.#pass = pass;
  }

  add(event: UpdateEvent): void {
    if (event.kind === "invalidate-all") this.#all = true;
    else this.#updates.push(...event.updates);
    this.#schedule();
  }

  /** This target joins the next pass (one more fetch after a fetch in flight, a coverage gap). */
  include(target: T): void {
    this.#targets.add(target);
    this.#schedule();
  }

  /** Runs the pass now, over everything gathered since the last one; the window starts over. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const updates = this.#updates;
    const all = this.#all;
    const targets = this.#targets;
    this.#updates = [];
    this.#all = false;
    this.#targets = new Set();
    this.#pass(updates, all, targets);
  }

  #schedule(): void {
    // A window, not a debounce: a steady stream still gets a pass every window.
    if (this.#timer === undefined) this.#timer = setTimeout(() => this.flush(), this.#windowMs());
  }
}
