// Tags from the schema: what a query reads, derived from its query key and the module
// `refetch tags` generates from the OpenAPI document (its x-refetch reads). Three key shapes:
// hey-api's `[{ _id: operationId, path: {...} }]`, and a URL path first (orval's
// `["/api/projects/42", params]`, and the plain `["/api/projects"]` convention).
import type { UpdateTag } from "./tags.js";

/** One operation of the generated module: its reads, each maybe keyed by a path parameter. */
export interface SchemaOperation {
  readonly id?: string;
  readonly method: string;
  readonly path: string;
  readonly reads: readonly { readonly type: string; readonly key?: string }[];
}

/** The generated module's `refetchTags`. */
export interface SchemaTags {
  readonly version: number;
  readonly operations: readonly SchemaOperation[];
}

/**
 * A query key's tags: an array (maybe empty: it reads nothing declared), `undefined` when the key
 * is not an API request's, or `null` when it looks like one the schema does not know (a stale
 * module: the invalidator warns once).
 */
export type TagsFromKey = (queryKey: readonly unknown[]) => UpdateTag[] | null | undefined;

// `getProjectById`, `get_project_by_id` and `GetProjectById` name one operation.
const loose = (id: string) => id.replace(/[^a-z0-9]/gi, "").toLowerCase();

const decode = (segment: string): string => {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // a stray `%`: the segment as written
  }
};

/** The tags of every query whose key names an operation of `schema`, for `tags:` (docs/js.md). */
export function fromSchema(schema: SchemaTags): TagsFromKey {
  if (schema.version !== 1) {
    throw new Error(`refetch: schema tags version ${schema.version} is not 1; regenerate them with this refetch's \`refetch tags\``);
  }
  const byId = new Map<string, SchemaOperation>();
  const byPath: [RegExp, string[], SchemaOperation][] = [];
  for (const operation of schema.operations) {
    if (operation.id !== undefined) byId.set(loose(operation.id), operation);
    if (operation.method !== "get") continue;
    const names: string[] = [];
    const source = operation.path.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{([^}]+)\}/g, (_, name: string) => {
      names.push(name);
      return "([^/]+)";
    });
    byPath.push([new RegExp(`^${source}/?$`), names, operation]);
  }
  // A literal segment beats a parameter: `/api/projects/mine` before `/api/projects/{id}`.
  byPath.sort((a, b) => a[1].length - b[1].length);

  const tagsOf = (operation: SchemaOperation, param: (name: string) => unknown): UpdateTag[] =>
    operation.reads.map(({ type, key }) => {
      const value = key === undefined ? undefined : param(key);
      return value === undefined || value === null ? type : { type, keys: [String(value)] };
    });

  return (queryKey) => {
    const first = queryKey[0];
    if (typeof first === "string" && first.startsWith("/")) {
      const path = first.replace(/[?#].*$/, "");
      for (const [pattern, names, operation] of byPath) {
        const match = pattern.exec(path);
        if (!match) continue;
        return tagsOf(operation, (name) => {
          const index = names.indexOf(name);
          return index < 0 ? undefined : decode(match[index + 1]!);
        });
      }
      return null;
    }
    if (first !== null && typeof first === "object" && typeof (first as { _id?: unknown })._id === "string") {
      const { _id, path } = first as { _id: string; path?: Record<string, unknown> };
      const operation = byId.get(loose(_id));
      return operation ? tagsOf(operation, (name) => path?.[name]) : null;
    }
    return undefined;
  };
}
