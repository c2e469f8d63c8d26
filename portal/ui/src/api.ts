// The generated client, configured for the browser: same-origin cookie, the CSRF header on
// mutations, errors as ApiError (status + the server's message), and queries tagged with the
// update types they depend on.
import { CursorTracker, type UpdateTag, type UpdatesMeta } from "refetch-sse/react";

import { client } from "./client/client.gen";
import { getMe } from "./client/sdk.gen";
import type { Me, UpdateType } from "./client/types.gen";

declare module "refetch-sse" {
  interface Register {
    updateType: UpdateType;
  }
}

// `meta: { updates }` is checked: a misspelt key or type is a compile error.
declare module "@tanstack/react-query" {
  interface Register {
    queryMeta: UpdatesMeta;
  }
}

/**
 * The `Refetch-Cursor` of every API response: the update stream starts from the oldest, so what
 * changed between a page's first fetch and the stream's hello is replayed, not lost.
 */
export const cursors = new CursorTracker();

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

let csrfToken: string | null = null;

client.setConfig({ credentials: "same-origin" });

client.interceptors.request.use((request) => {
  if (csrfToken && request.method !== "GET" && request.method !== "HEAD") {
    request.headers.set("X-CSRF-Token", csrfToken);
  }
  return request;
});

client.interceptors.response.use((response) => {
  cursors.note(response);
  return response;
});

client.interceptors.error.use((error, response) => {
  if (error instanceof ApiError) return error;
  return new ApiError(response?.status ?? 0, describe(error));
});

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || "network error";
  if (typeof error === "string") return error || "request failed";
  if (error && typeof error === "object" && "detail" in error) {
    const detail = (error as { detail: unknown }).detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      // FastAPI's 422: [{loc: ["body", "name"], msg: "..."}]
      return detail
        .map((d: { loc?: unknown[]; msg?: string }) => {
          const field = (d.loc ?? []).filter((part) => part !== "body").join(".");
          return field ? `${field}: ${d.msg ?? "invalid"}` : (d.msg ?? "invalid");
        })
        .join("; ");
    }
  }
  return "request failed";
}

export function errorMessage(error: unknown): string {
  if (error instanceof ApiError && error.status === 0) {
    return "The portal cannot be reached. Check your connection; this page retries by itself.";
  }
  return error instanceof Error ? error.message : describe(error);
}

export function isNotFound(error: unknown): boolean {
  return error instanceof ApiError && error.status === 404;
}

/** The signed-in user, or null when signed out (a 401 is an answer here, not an error). */
export const meQuery = {
  queryKey: ["me"] as const,
  queryFn: async ({ signal }: { signal: AbortSignal }): Promise<Me | null> => {
    const { data, response } = await getMe({ signal, throwOnError: false });
    if (response?.status === 401) {
      csrfToken = null;
      return null;
    }
    if (!data) throw new ApiError(response?.status ?? 0, "could not load your account");
    csrfToken = data.csrf_token;
    return data;
  },
  // Role changes and removals from a tenant reach the user as `authentication`.
  meta: { updates: ["authentication"] } satisfies UpdatesMeta,
};

export function rememberCsrfToken(token: string | null): void {
  csrfToken = token;
}

/**
 * Tag generated query options with the update types of their OpenAPI tags (the generator puts
 * them in the query key), narrowed to `keys` when given, plus the tags in `also`.
 */
export function live<O extends { queryKey: readonly [{ tags?: readonly string[] }] }>(
  options: O,
  { keys, also = [] }: { keys?: readonly (string | number)[]; also?: readonly UpdateTag[] } = {},
): O & { meta: UpdatesMeta } {
  const types = (options.queryKey[0].tags ?? []) as UpdateType[];
  const tags: UpdateTag[] = types.map((type) => (keys ? { type, keys } : type));
  return { ...options, meta: { updates: [...tags, ...also] } };
}

/** Tenant data also depends on `authentication`: a user who leaves a tenant must stop seeing it. */
export const TENANT_DATA = { also: ["authentication"] } as const;
