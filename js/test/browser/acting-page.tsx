// The acting-tab page (tests/e2e/test_acting_tab.py): React + TanStack Query, written as docs/js.md
// shows it, with a mutation that may invalidate in `onSuccess` (the TanStack idiom). URL switches:
// `onSuccess=1` (invalidate ["projects"] there), `slow=1` (the server holds the PATCH's answer),
// `cursors=0` (no CursorTracker), `layout=note` (useSSEUpdates() first in the page component that
// runs the queries, as the architecture note shows it).
import { QueryClient, QueryClientProvider, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { createRoot } from "react-dom/client";

import { CursorTracker } from "../../src/cursors.js";
import { UpdatesProvider, useSSEUpdates, useUpdateStatus } from "../../src/react.js";

const params = new URLSearchParams(location.search);
const cursors = params.get("cursors") === "0" ? undefined : new CursorTracker();
const api = cursors ? cursors.wrap() : (input: RequestInfo | URL, init?: RequestInit) => fetch(input, init);
// `share=0`: one connection per tab (no Web Locks), so the first connect starts in the effect itself.
const share = params.get("share") !== "0";
const client = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity } } });

interface Project {
  id: number;
  name: string;
}

declare global {
  interface Window {
    rename?: (name: string) => void;
  }
}

function Projects({ openStream = false }: { openStream?: boolean }) {
  // The architecture note's layout: the stream opened first in the page component, then its queries.
  // eslint-disable-next-line react-hooks/rules-of-hooks
  if (openStream) useSSEUpdates({ url: "/api/updates", cursors, share });
  const queryClient = useQueryClient();
  const projects = useQuery({
    queryKey: ["projects"],
    queryFn: async (): Promise<Project[]> => (await api("/api/projects")).json(),
    meta: { updates: ["projects"] },
  });
  const sentinel = useQuery({
    queryKey: ["sentinel"],
    queryFn: async (): Promise<number> => (await api("/api/sentinel")).json(),
    meta: { updates: ["sentinel"] },
  });
  const rename = useMutation({
    mutationFn: async (name: string) => {
      const slow = params.get("slow") === "1" ? "?slow=1" : "";
      const response = await api(`/api/projects/1${slow}`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name }),
      });
      return (await response.json()) as Project;
    },
    onSuccess:
      params.get("onSuccess") === "1" ? () => queryClient.invalidateQueries({ queryKey: ["projects"] }) : undefined,
  });
  window.rename = (name) => rename.mutate(name);
  const status = useUpdateStatus();
  return (
    <div>
      <p data-testid="status" data-status={status}>{status}</p>
      <p data-testid="sentinel">{sentinel.data ?? "-"}</p>
      <ul data-testid="projects">
        {projects.data?.map((p) => <li key={p.id}>{p.name}</li>)}
      </ul>
    </div>
  );
}

createRoot(document.getElementById("root")!).render(
  <QueryClientProvider client={client}>
    {params.get("layout") === "note" ? (
      <Projects openStream />
    ) : (
      <UpdatesProvider url="/api/updates" cursors={cursors} share={share}>
        <Projects />
      </UpdatesProvider>
    )}
  </QueryClientProvider>,
);
