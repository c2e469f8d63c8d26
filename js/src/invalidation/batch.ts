// One invalidation pass per burst, for both invalidators: what the stream said since the last
// pass, and the queries (or keys) that join the next pass whatever it says.
import type { Update, UpdateEvent } from "../protocol.js";
import { newestOf } from "./own-changes.js";

/**
 * One pass: `all` when an `invalidate-all` arrived (every tagged query or key is concerned);
 * `cursor` is the newest cursor of the frames in it (every update in it is at or before it), null
 * when one had none or two could not be ordered.
 */
export type Pass<T> = (updates: Update[], all: boolean, targets: Set<T>, cursor: string | null) => void;

/** Asked when a pass is due: a promise to wait for before running it, or null to run it now. */
export type Hold = () => Promise<void> | null;

export class Batch<T> {
  readonly #windowMs: () => number;
  readonly #pass: Pass<T>;
  readonly #hold: Hold | undefined;
  #updates: Update[] = [];
  #all = false;
  #cursor: string | null | undefined = undefined;
  #targets = new Set<T>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  // Bumped by every pass, so a hold that ends after a flush() runs no second pass.
  #generation = 0;
  #holding = false;

  /** `windowMs` is read when a window opens (the invalidator's `coalesceMs`, which may change). */
  constructor(windowMs: () => number, pass: Pass<T>, hold?: Hold) {
    this.#windowMs = windowMs;
    this.#pass = pass;
    this.#hold = hold;
  }

  add(event: UpdateEvent): void {
    if (event.kind === "invalidate-all") this.#all = true;
    else this.#updates.push(...event.updates);
    this.#cursor = newestOf(this.#cursor, event.cursor);
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
    this.#holding = false;
    this.#generation++;
    const updates = this.#updates;
    const all = this.#all;
    const targets = this.#targets;
    const cursor = this.#cursor ?? null;
    this.#updates = [];
    this.#all = false;
    this.#cursor = undefined;
    this.#targets = new Set();
    this.#pass(updates, all, targets, cursor);
  }

  #schedule(): void {
    // A window, not a debounce: a steady stream still gets a pass every window.
    if (this.#timer === undefined && !this.#holding) this.#timer = setTimeout(() => this.#due(), this.#windowMs());
  }

  #due(): void {
    this.#timer = undefined;
    const hold = this.#hold?.();
    if (!hold) {
      this.flush();
      return;
    }
    // What arrives meanwhile joins this pass.
    this.#holding = true;
    const generation = this.#generation;
    void hold.then(() => {
      if (generation === this.#generation) this.flush();
    });
  }
}
