// @vitest-environment happy-dom
// Tags from the schema (docs/js.md), end to end: a FastAPI app that declares its routes
// (test/servers/declared.py), a React app using the hooks orval generates for it and its schema
// tags as `refetch tags` writes them (both committed in test/orval/, `npm run generate` there), and
// no hand-written tag: a change notified on the server refetches exactly the queries that read that
// type and key. Also the plain `queryKey: ["/api/..."]` convention, and explicit tags winning.
// happy-dom is a browser on another origin: the app answers CORS.
import { QueryClient, QueryClientProvider, QueryObserver, type QueryKey } from "@tanstack/react-query";
import { cleanup, render } from "@testing-library/react";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

import { CursorTracker, fromSchema } from "../src/query-invalidator.js";
import { queryUpdates } from "../src/query-updates.js";
import { UpdatesProvider } from "../src/react.js";
import {
  addImage,
  addTask,
  getGetProjectQueryKey,
  getListImagesQueryKey,
  getListProjectsQueryKey,
  getListTasksQueryKey,
  renameProject,
  useGetProject,
  useListImages,
  useListProjects,
  useListTasks,
} from "./orval/client.js";
import { server } from "./orval/fetcher.js";
import { refetchTags } from "./orval/refetch-tags.js";
import { PythonServer, serverAvailable } from "./python-server.js";

const python = new PythonServer(".venv/bin/python js/test/servers/declared.py");
const cleanups: Array<() => void> = [];
const waitFor = (check: () => void) => vi.waitFor(check, { timeout: 15_000, interval: 20 });
const quiet = { warn: () => {}, error: console.error };

/** Counts each query's fetches, by query key. */
function fetchCounter(client: QueryClient, keys: Record<string, QueryKey>) {
  const counts = new Map<string, number>();
  client.getQueryCache().subscribe((event) => {
    if (event.type === "updated" && event.action.type === "fetch") {
      counts.set(event.query.queryHash, (counts.get(event.query.queryHash) ?? 0) + 1);
    }
  });
  const hash = (key: QueryKey) => client.getQueryCache().find({ queryKey: key, exact: true })?.queryHash ?? "";
  return () => Object.fromEntries(Object.entries(keys).map(([name, key]) => [name, counts.get(hash(key)) ?? 0]));
}

/** A framework-free app with these queries shown, live with schema tags. */
async function app(queries: Record<string, { queryKey: QueryKey; queryFn?: unknown; meta?: Record<string, unknown> }>, logger = quiet) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
  const fetches = fetchCounter(client, Object.fromEntries(Object.entries(queries).map(([name, q]) => [name, q.queryKey])));
  const session = queryUpdates(client, { logger });
  const offs = Object.values(queries).map((options) => new QueryObserver(client, options as never).subscribe(() => {}));
  const disconnect = session.connect({ url: `${python.base}/api/updates`, tags: fromSchema(refetchTags), logger });
  cleanups.push(() => {
    for (const off of offs) off();
    disconnect();
    client.clear();
  });
  await waitFor(() => {
    expect(session.status).toBe("open");
    for (const query of client.getQueryCache().getAll()) expect(query.state.status).toBe("success");
  });
  // The first fetches (and the once-over of data read before the hello) are done.
  await new Promise((done) => setTimeout(done, 300));
  return { fetches };
}

describe.skipIf(!serverAvailable())("tags from the schema, against a real FastAPI app", () => {
  beforeAll(async () => {
    await python.start();
    server.base = python.base;
  }, 30_000);
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });
  afterAll(() => python.stop(), 15_000);

  it("test_an_orval_react_app_refetches_exactly_the_queries_reading_the_changed_type_and_key", async () => {
    server.cursors = new CursorTracker();
    const client = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
    const fetches = fetchCounter(client, {
      projects: getListProjectsQueryKey(),
      project1: getGetProjectQueryKey(1),
      project2: getGetProjectQueryKey(2),
      tasks1: getListTasksQueryKey(1),
      tasks2: getListTasksQueryKey(2),
      images: getListImagesQueryKey(),
    });
    const names = (result: { data?: { data: unknown } }) =>
      ((result.data?.data ?? []) as { name?: string; title?: string }[]).map((item) => item.name ?? item.title).join(",");
    function Project({ id }: { id: number }) {
      const project = useGetProject(id);
      const tasks = useListTasks(id);
      return <li>{(project.data?.data as { name?: string } | undefined)?.name} tasks: {names(tasks)}</li>;
    }
    function App() {
      const projects = useListProjects();
      const images = useListImages();
      return (
        <main>
          <p>projects: {names(projects)}</p>
          <p>images: {names(images)}</p>
          <ul>
            <Project id={1} />
            <Project id={2} />
          </ul>
        </main>
      );
    }
    const view = render(
      <QueryClientProvider client={client}>
        <UpdatesProvider url={`${python.base}/api/updates`} cursors={server.cursors} tags={fromSchema(refetchTags)} logger={quiet}>
          <App />
        </UpdatesProvider>
      </QueryClientProvider>,
    );
    cleanups.push(() => {
      cleanup();
      client.clear();
    });
    await waitFor(() => expect(view.container.textContent).toContain("images: debian"));
    await waitFor(() => expect(queryUpdates(client).status).toBe("open"));
    await new Promise((done) => setTimeout(done, 300));
    // Page load: one fetch per query (the stream starts from the oldest Refetch-Cursor read).
    expect(fetches()).toEqual({ projects: 1, project1: 1, project2: 1, tasks1: 1, tasks2: 1, images: 1 });
    const before = fetches();
    const grew = () => Object.fromEntries(Object.entries(fetches()).map(([name, n]) => [name, n - before[name]!]));
    // Frames arrive in order: once the images change is refetched, any refetch the rename
    // caused has started, so the counts are final.
    expect((await renameProject(1, { name: "artemis" })).status).toBe(200);
    expect((await addImage({ name: "alpine" })).status).toBe(201);
    await waitFor(() => expect(grew().images).toBe(1));
    expect(grew()).toEqual({ projects: 1, project1: 1, project2: 0, tasks1: 0, tasks2: 0, images: 1 });
    await waitFor(() => expect(view.container.textContent).toContain("artemis tasks: launch"));

    expect((await addTask(2, { name: "undock" })).status).toBe(201);
    expect((await addImage({ name: "arch" })).status).toBe(201);
    await waitFor(() => expect(grew().images).toBe(2));
    expect(grew()).toEqual({ projects: 1, project1: 1, project2: 0, tasks1: 0, tasks2: 1, images: 2 });
    await waitFor(() => expect(view.container.textContent).toContain("tasks: dock,undock"));
  });

  it("test_plain_path_keys_are_tagged_and_explicit_meta_wins", async () => {
    const get = async ({ queryKey }: { queryKey: QueryKey }) => (await fetch(`${python.base}${String(queryKey[0])}`)).json();
    const { fetches } = await app({
      project2: { queryKey: ["/api/projects/2"], queryFn: get },
      tasks1: { queryKey: ["/api/projects/1/tasks", { page: 1 }], queryFn: get },
      // Declared by hand: it follows `tasks`, not the `images` its path reads.
      imagesAsTasks: { queryKey: ["/api/images"], queryFn: get, meta: { updates: ["tasks"] } },
      notApi: { queryKey: ["settings"], queryFn: async () => ({}) },
    });
    const before = fetches();
    const grew = () => Object.fromEntries(Object.entries(fetches()).map(([name, n]) => [name, n - before[name]!]));
    expect((await renameProject(2, { name: "voyager" })).status).toBe(200);
    expect((await addTask(1, { name: "refuel" })).status).toBe(201);
    await waitFor(() => expect(grew().tasks1).toBe(1));
    await waitFor(() => expect(grew().imagesAsTasks).toBe(1));
    expect((await addImage({ name: "fedora" })).status).toBe(201);
    expect((await addTask(1, { name: "sentinel" })).status).toBe(201);
    await waitFor(() => expect(grew().tasks1).toBe(2));
    expect(grew()).toEqual({ project2: 1, tasks1: 2, imagesAsTasks: 2, notApi: 0 });
  });

  it("test_a_key_the_schema_tags_do_not_know_warns_once", async () => {
    const warn = vi.fn();
    const get = async () => [];
    await app(
      {
        a: { queryKey: ["/api/nothing"], queryFn: get },
        b: { queryKey: ["/api/nothing/else"], queryFn: get },
        known: { queryKey: ["/api/images"], queryFn: get },
      },
      { warn, error: console.error },
    );
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toMatch(/refetch tags.*\/api\/nothing/);
  });
});
