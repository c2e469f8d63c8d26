// The orval client's fetch (its `override.mutator`): orval's fetch client answers
// `{ data, status, headers }`; the test's server is on a port chosen at run time.
export const server = { base: "" };

export async function fetcher<T>(url: string, init?: RequestInit): Promise<T> {
  const response = await fetch(`${server.base}${url}`, init);
  if (!response.ok) throw new Error(`${init?.method ?? "GET"} ${url}: ${response.status}`);
  return { data: await response.json(), status: response.status, headers: response.headers } as T;
}
