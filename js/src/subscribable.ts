// The listener plumbing of the stream classes, the session and the cursor tracker, in one place.

/** Adds the listener; returns its removal. */
export function listen<T>(listeners: Set<T>, listener: T): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * Calls every listener with the value, over a copy (a listener may remove another), logging a
 * listener that throws so it cannot break the stream or the listeners after it.
 */
export function notify<T>(listeners: Set<(value: T) => void>, value: T, logger: Pick<Console, "error">): void {
  for (const listener of [...listeners]) {
    try {
      listener(value);
    } catch (error) {
      logger.error("refetch: a listener threw", error);
    }
  }
}

/** Appends the entry to a log that keeps only its `size` most recent entries. */
export function append<T>(log: T[], entry: T, size: number): void {
  log.push(entry);
  if (log.length > size) log.splice(0, log.length - size);
}
