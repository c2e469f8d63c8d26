// One listener set, TanStack's `Subscribable` shape: the streams' update, status and frame
// listeners, the session's change listeners and the cursor tracker's all go through it.

export class Subscribable<T = void> {
  readonly #listeners = new Set<(value: T) => void>();
  readonly #logger: Pick<Console, "error">;

  constructor(logger: Pick<Console, "error"> = console) {
    this.#logger = logger;
  }

  /** Adds the listener; returns its removal. */
  subscribe(listener: (value: T) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Calls every listener with the value, over a copy (a listener may remove another), logging a
   * listener that throws so it cannot break its source or the listeners after it.
   */
  notify(value: T): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(value);
      } catch (error) {
        this.#logger.error("refetch: a listener threw", error);
      }
    }
  }
}
