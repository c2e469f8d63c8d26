// Whether the user can see the page: an invalidation while it is hidden only marks, and the
// refetch waits until it is visible again (both invalidators).

/** The part of TanStack's focusManager the invalidators use; an adapter passes its own copy. */
export interface FocusManagerLike {
  isFocused(): boolean;
  subscribe(listener: (focused: boolean) => void): () => void;
}

/** Used only when no focusManager is passed: the page's visibility, as TanStack's default reads it. */
export const pageVisibility: FocusManagerLike = {
  isFocused: () => (globalThis as { document?: Document }).document?.visibilityState !== "hidden",
  subscribe(listener) {
    const doc = (globalThis as { document?: Document }).document;
    if (!doc) return () => {};
    const onChange = () => listener(doc.visibilityState !== "hidden");
    doc.addEventListener("visibilitychange", onChange);
    return () => doc.removeEventListener("visibilitychange", onChange);
  },
};
