// What a query or a key depends on, and whether an update concerns it: the one matching rule of
// both invalidators and every adapter's `useAutoRefetch(query, types, { keys })`.
import type { Update, UpdateType } from "../protocol.js";

/** What a query depends on: a whole update type, or only some keys of it. */
export type UpdateTag = UpdateType | { type: UpdateType; keys?: readonly (string | number)[] };

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
        : { type: tag.type, keys: tag.keys.map(String) },
  );
}

export function tagMatches(tag: NormalTag, update: Update): boolean {
  if (tag.type !== update.type) return false;
  if (!update.keys || !tag.keys) return true;
  return update.keys.some((key) => tag.keys!.includes(key));
}

/** The tags `useAutoRefetch(query, types, { keys })` declares, in every adapter. */
export function tagsFor(types: UpdateType | readonly UpdateType[], keys?: readonly (string | number)[]): UpdateTag[] {
  const list: readonly UpdateType[] = Array.isArray(types) ? types : [types as UpdateType];
  return list.map((type) => (keys ? { type, keys } : type));
}
