// Which keys the client shows now, for the stream's `watch=` (watch.ts): each invalidator knows
// what is shown (TanStack: queries with observers; SWR: mounted keys) and calls `changed()` when
// that may have moved; listeners hear once per microtask, and only when the set did change.
import { Subscribable } from "../subscribable.js";
import { addWatched, type Watched } from "../watch.js";
import type { NormalTag } from "./tags.js";

export class WatchTracker {
  readonly #compute: () => Watched;
  readonly #listeners: Subscribable<Watched>;
  #signature = "";
  #scheduled = false;
  #listening = 0;

  /** `compute()` gives what is shown right now. */
  constructor(compute: () => Watched, logger: Pick<Console, "error">) {
    this.#compute = compute;
    this.#listeners = new Subscribable(logger);
  }

  /** What is shown now. */
  current(): Watched {
    return this.#compute();
  }

  subscribe(listener: (watched: Watched) => void): () => void {
    if (this.#listening++ === 0) this.#signature = signature(this.#compute());
    const off = this.#listeners.subscribe(listener);
    return () => {
      off();
      this.#listening--;
    };
  }

  /** What is shown may have changed: listeners hear it after this task's other changes. */
  changed(): void {
    if (this.#listening === 0 || this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      const watched = this.#compute();
      const next = signature(watched);
      if (next === this.#signature) return;
      this.#signature = next;
      this.#listeners.notify(watched);
    });
  }
}

/** What these tags, all shown, watch together. */
export function watchedOf(tagLists: Iterable<readonly NormalTag[]>): Watched {
  const out = new Map<string, Set<string> | "all">();
  for (const tags of tagLists) for (const tag of tags) addWatched(out, tag.type, tag.keys);
  return out;
}

function signature(watched: Watched): string {
  return [...watched]
    .map(([type, keys]) => (keys === "all" ? type : `${type}:${[...keys].sort().join("\n")}`))
    .sort()
    .join("\n\n");
}
