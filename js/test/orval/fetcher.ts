// The orval client's fetch (its `override.mutator`): orval's fetch client answers
// `{ data, status, headers }`. The test's server is on a port chosen at run time, and the app
// notes each response's Refetch-Cursor (docs/js.md, React step 3).
import type { CursorTracker } from "refetch-sse";

export const server: { base: string; cursors: CursorTracker | null } = { base: "", cursors: null };

export async function fetcher<T>(url: string, init?: RequestInit): Promise<T> {
  const response = await fetch(`${server.base}${url}`, init);
  server.cursors?.note(response);
  if (!response.ok) throw new Error(`${init?.method ?? "GET"} ${url}: ${response.status}`);
  return { data: await response.json(), status: response.status, headers: response.headers } as T;
}
