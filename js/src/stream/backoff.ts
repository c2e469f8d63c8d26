export interface BackoffOptions {
  /** First ceiling in ms; the server's `retry:` replaces it once a hello arrived. Default 1000. */
  initialMs?: number;
  /** Largest ceiling in ms. Default 30000. Also bounds the server's `retry:`. */
  maxMs?: number;
  /** A connection open this long resets the backoff to its first ceiling. Default 10000. */
  stableMs?: number;
  /**
   * After the server said it is going away (a `reconnect` frame: a deploy, a restart), failed
   * attempts are retried quickly for this long, counted from that frame, before the backoff
   * takes over. Default 15000.
   */
  drainWindowMs?: number;
  /** The step of those quick retries: each waits a uniform draw in [step, 2 × step) ms. Default 250. */
  drainStepMs?: number;
}

/**
 * "Full jitter": a uniform draw in [0, min(max, initial * 2^attempt)). Spreading reconnects over
 * the whole window is what keeps thousands of clients from hitting a restarted server at once.
 */
export function fullJitterDelay(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * A quick retry while a drained server restarts: a uniform draw in [step, 2 × step). Jittered so
 * that clients the server told to come back at different moments stay spread while they retry,
 * and at least one step so a refused port is not hammered.
 */
export function drainStepDelay(stepMs: number, random: () => number = Math.random): number {
  return Math.floor(stepMs + random() * stepMs);
}

/** The delay a `reconnect` frame asks for (`{"delay": ms}`), capped at `maxMs`; null if it has none. */
export function drainDelay(data: unknown, maxMs: number): number | null {
  const delay = (data as { delay?: unknown } | null | undefined)?.delay;
  if (typeof delay !== "number" || !Number.isFinite(delay) || delay < 0) return null;
  return Math.min(maxMs, Math.floor(delay));
}
