export interface BackoffOptions {
  /** First ceiling in ms; the server's `retry:` replaces it once a hello arrived. Default 1000. */
  initialMs?: number;
  /** Largest ceiling in ms. Default 30000. Also bounds the server's `retry:`. */
  maxMs?: number;
  /** A connection open this long resets the backoff to its first ceiling. Default 10000. */
  stableMs?: number;
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
