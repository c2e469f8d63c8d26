// The fake data API the adapter tests share: each request reads the version when it starts and
// answers 50 ms later, so fake timers decide what overlaps; aborts and overlaps are counted.
import type { UpdateEvent } from "../src/protocol.js";

export class DataApi {
  version = 0;
  calls = 0;
  aborted = 0;
  completed = 0;
  /** Requests started while another one was in flight (SWR keeps both, and drops the older answer). */
  overlapping = 0;
  #inFlight = 0;

  queryFn = ({ signal }: { signal?: AbortSignal } = {}): Promise<number> => {
    this.calls++;
    if (this.#inFlight > 0) this.overlapping++;
    this.#inFlight++;
    const version = this.version;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#inFlight--;
        this.completed++;
        resolve(version);
      }, 50);
      signal?.addEventListener("abort", () => {
        this.#inFlight--;
        this.aborted++;
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      });
    });
  };
}

export const projectsChanged = (keys?: string[]): UpdateEvent => ({
  kind: "invalidate",
  updates: [keys ? { type: "projects", keys } : { type: "projects" }],
  cursor: null,
});
