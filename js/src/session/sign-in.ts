// The stream follows sign-in: a stream the server answered 401 makes no more attempts by itself
// (retrying a signed-out user on a timer would only collect 401s), so the session tries again when
// something says the user may now be signed in, without the app wiring `enabled` or calling
// `reconnect()`:
//
// - one of the app's own requests succeeded (a query fetch, a mutation: the sign-in form's POST,
//   the `/api/me` refetched after it), as the session's cache reports them;
// - the page became visible again (the user signed in in another tab and came back).
//
// A signed-out app still makes successful requests (public data, a `/api/me` that says "nobody"),
// so the retries those cause are spaced out: the n-th retry that is answered 401 again waits
// 2^n seconds (at most 30) before the next one; the page becoming visible always retries.
import { pageVisibility, type FocusManagerLike } from "../invalidation/focus.js";
import type { UpdateSource } from "../protocol.js";

const FIRST_GAP_MS = 1000;
const MAX_GAP_MS = 30_000;

export interface SignInSignals {
  /** Calls back when one of the app's own requests succeeded; returns the unsubscribe. */
  appSucceeded?: (listener: () => void) => () => void;
  /** Default: the page's visibility. */
  visibility?: FocusManagerLike;
  now?: () => number;
}

/** Retries `source` after a 401 on these signals; returns the stop. */
export function followSignIn(source: UpdateSource, signals: SignInSignals = {}): () => void {
  const now = signals.now ?? Date.now;
  let retries = 0;
  let lastRetry = -Infinity;
  const retry = (always: boolean) => {
    if (source.status !== "unauthorized") return;
    const gap = Math.min(MAX_GAP_MS, FIRST_GAP_MS * 2 ** retries);
    if (!always && retries > 0 && now() - lastRetry < gap) return;
    retries++;
    lastRetry = now();
    source.reconnect();
  };
  const offStatus = source.onStatus((status) => {
    if (status === "open") retries = 0;
  });
  const offApp = signals.appSucceeded?.(() => retry(false)) ?? (() => {});
  const offVisible = (signals.visibility ?? pageVisibility).subscribe((visible) => {
    if (visible) retry(true);
  });
  return () => {
    offStatus();
    offApp();
    offVisible();
  };
}
