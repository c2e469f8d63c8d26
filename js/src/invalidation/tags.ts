// What a query or a key depends on, and whether an update concerns it: the one matching rule of
// both invalidators and every adapter's `useAutoRefetch(query, types, { keys })`.
import type { Update, UpdateKey, UpdateType } from "../protocol.js";

/**
 * What a query depends on: a whole update type, or only some keys of it (of the key type
 * `Register["updateKeys"]` gives that update type, when the app registers one).
 */
export type UpdateTag = UpdateType | { [T in UpdateType]: { type: T; keys?: readonly UpdateKey<T>[] } }[UpdateType];

export interface NormalTag {
  type: string;
  keys?: string[];
}

export function normalizeTags(tags: UpdateTag | readonly UpdateTag[]): NormalTag[] {
  const list: readonly UpdateTag[] = Array.isArray(tags) ? tags : [tags as UpdateTag];
  return list.map((tag) =>
    typeof tag === "string"
      ? { type: tag }
      : tag.keys === undefined
        ? { type: tag.type }
        : { type: tag.type, keys: tag.keys.map(keyString) },
  );
}

/** A key as the wire carries it; anything but a string or a finite number is a mistake worth naming. */
function keyString(key: unknown): string {
  if (typeof key === "string") return key;
  if (typeof key === "number" && Number.isFinite(key)) return String(key);
  throw new TypeError(`refetch: keys are strings or numbers (e.g. { keys: [project.id] }), got ${typeof key} ${String(key)}`);
}

export function tagMatches(tag: NormalTag, update: Update): boolean {
  if (tag.type !== update.type) return false;
  if (!update.keys || !tag.keys) return true;
  return update.keys.some((key) => tag.keys!.includes(key));
}

/** The tags `useAutoRefetch(query, types, { keys })` declares, in every adapter. */
export function tagsFor<T extends UpdateType>(types: T | readonly T[], keys?: readonly UpdateKey<T>[]): UpdateTag[] {
  const list: readonly T[] = Array.isArray(types) ? types : [types as T];
  return list.map((type) => (keys ? ({ type, keys } as UpdateTag) : type));
}
