// A page with no UI framework: a bare @tanstack/query-core QueryClient kept fresh by refetch-sse.
import { QueryClient, QueryObserver } from "@tanstack/query-core";
import { CursorTracker } from "refetch-sse";
import { queryUpdates } from "refetch-sse/query-updates";

/** Shows the stream's status and the project list in `root`; returns the page's teardown. */
export function startProjectsPage(root: HTMLElement, base = ""): () => void {
  const client = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity } } });
  client.mount(); // focus and online tracking, as every adapter's provider does
  const cursors = new CursorTracker();
  const api = cursors.wrap(); // a fetch that notes each response's Refetch-Cursor

  const document = root.ownerDocument;
  const status = document.createElement("p");
  const list = document.createElement("ul");
  root.append(status, list);

  const projects = new QueryObserver(client, {
    queryKey: ["projects"],
    queryFn: async (): Promise<string[]> => (await api(`${base}/api/projects`)).json(),
    meta: { updates: ["projects"] }, // refetched when the server notifies "projects"
  });
  const offProjects = projects.subscribe(({ data = [] }) => {
    list.replaceChildren(...data.map((id) => Object.assign(document.createElement("li"), { textContent: `project ${id}` })));
  });

  const updates = queryUpdates(client); // one per client
  const offStatus = updates.subscribe(() => (status.textContent = updates.status));
  const disconnect = updates.connect({ url: `${base}/api/updates`, cursors });

  return () => {
    disconnect();
    offStatus();
    offProjects();
    client.unmount();
  };
}
