// TanStack DB query collections kept fresh by the same invalidator (docs/js.md, "TanStack DB"),
// against the real Python server (examples/timer.py: POST /api/projects notifies "projects", a
// timer notifies "progress" every 2 s): a `queryCollectionOptions` collection puts its query in the
// app's QueryClient with the `meta` it is given, so `meta: { updates: [...] }` tags it like any
// query. Nothing mocked: the real stream, the real @tanstack/db live query.
import { createCollection, createLiveQueryCollection, gt } from "@tanstack/db";
import { QueryClient } from "@tanstack/query-core";
import { queryCollectionOptions } from "@tanstack/query-db-collection";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

import { CursorTracker } from "../src/cursors.js";
import { queryUpdates, type QueryUpdates, type UpdatesMeta } from "../src/query-updates.js";
import { PythonServer, serverAvailable } from "./python-server.js";

const python = new PythonServer();
const waitFor = (check: () => void | Promise<void>) => vi.waitFor(check, { timeout: 15_000, interval: 20 });

interface Project {
  id: string;
  n: number;
}

/** One page: a QueryClient, the projects collection on it, a live query over it, the stream. */
function page(options: { onInsert?: "write" | "refetch"; onDemand?: boolean } = {}) {
  const client = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity, retry: false } } });
  client.mount();
  const cursors = new CursorTracker();
  const api = cursors.wrap();
  let fetches = 0;
  const projects = createCollection(
    queryCollectionOptions({
      queryKey: ["projects"],
      queryFn: async (): Promise<Project[]> => {
        fetches++;
        const ids = (await (await api(`${python.base}/api/projects`)).json()) as string[];
        return ids.map((id) => ({ id, n: Number(id) }));
      },
      queryClient: client,
      getKey: (project) => project.id,
      // On demand, each live query's subset is a query of its own, key ["projects", <its where>].
      syncMode: options.onDemand ? "on-demand" : "eager",
      meta: { updates: ["projects"] } satisfies UpdatesMeta,
      // docs/js.md's handler: the server's row goes straight into the collection, no refetch here;
      // "refetch" is the handler TanStack DB's docs show (refetch, then `refetch: false`), to compare.
      onInsert: async ({ collection }) => {
        const { id } = (await (await api(`${python.base}/api/projects`, { method: "POST" })).json()) as { id: string };
        if (options.onInsert === "refetch") await collection.utils.refetch();
        else await collection.utils.writeInsert({ id, n: Number(id) });
        return { refetch: false };
      },
    }),
  );
  const shown = createLiveQueryCollection((q) =>
    q
      .from({ project: projects })
      .where(({ project }) => gt(project.n, 0))
      .select(({ project }) => ({ id: project.id })),
  );
  const watching = shown.subscribeChanges(() => {}); // what a useLiveQuery does while shown
  const updates = queryUpdates(client);
  const disconnect = updates.connect({ url: `${python.base}/api/updates`, cursors, share: false });
  const queries = () => client.getQueryCache().findAll({ queryKey: ["projects"] });
  return {
    updates,
    projects,
    fetches: () => fetches,
    ids: () => shown.toArray.map((row) => row.id).sort((a, b) => Number(a) - Number(b)),
    queries,
    idle: () => expect(queries().map((query) => query.state.fetchStatus)).toEqual(queries().map(() => "idle")),
    close: async () => {
      disconnect();
      watching.unsubscribe();
      await shown.cleanup();
      await projects.cleanup();
      client.unmount();
      client.clear();
    },
  };
}

type Page = ReturnType<typeof page>;

async function createProject(): Promise<string> {
  const response = await fetch(`${python.base}/api/projects`, { method: "POST" });
  expect(response.status).toBe(201);
  return ((await response.json()) as { id: string }).id;
}

/** How many `progress` frames the stream has heard: the timer's notify, every 2 s. */
const progressFrames = (updates: QueryUpdates) => updates.log.filter((frame) => frame.data.includes('"progress"')).length;

/** Waits until the stream has heard `n` more frames of the timer's type (a type no query here has). */
async function heardProgress(updates: QueryUpdates, n: number): Promise<void> {
  const before = progressFrames(updates);
  await waitFor(() => expect(progressFrames(updates)).toBeGreaterThanOrEqual(before + n));
}

/** Loaded and listening: the first fetch shown, the stream open. */
async function loaded(p: Page): Promise<void> {
  await waitFor(() => expect(p.updates.status).toBe("open"));
  await waitFor(p.idle);
  expect(p.fetches()).toBe(1);
}

describe.skipIf(!serverAvailable())("a TanStack DB query collection kept fresh by the invalidator", () => {
  let current: Page | null = null;

  beforeAll(() => python.start(), 30_000);
  afterAll(() => python.stop(), 15_000);
  afterEach(async () => {
    await current?.close();
    current = null;
  });

  it("test_a_notify_of_its_type_refetches_the_collection_once_and_the_live_query_shows_it", async () => {
    const p = (current = page());
    await loaded(p);
    const id = await createProject();
    await waitFor(() => expect(p.ids()).toContain(id));
    // Later frames of another type and any pending pass are behind us: no second fetch comes.
    await heardProgress(p.updates, 1);
    p.updates.invalidator.flush();
    await waitFor(p.idle);
    expect(p.fetches()).toBe(2);
  }, 30_000);

  it("test_a_notify_of_another_type_refetches_nothing", async () => {
    const p = (current = page());
    await loaded(p);
    await heardProgress(p.updates, 2);
    p.updates.invalidator.flush();
    await waitFor(p.idle);
    expect(p.fetches()).toBe(1);
  }, 30_000);

  it("test_a_burst_of_notifies_within_the_batching_window_is_one_refetch", async () => {
    const p = (current = page());
    await loaded(p);
    // The server sends the first of a burst at once and the rest together 100 ms later
    // (min_interval); a window wide enough for both on a busy machine makes them one pass.
    p.updates.invalidator.coalesceMs = 3000;
    const ids = await Promise.all(Array.from({ length: 5 }, () => createProject()));
    await waitFor(() => expect(p.ids()).toEqual(expect.arrayContaining(ids)));
    await heardProgress(p.updates, 1);
    p.updates.invalidator.flush();
    await waitFor(p.idle);
    expect(p.fetches()).toBe(2);
  }, 30_000);

  it("test_an_insert_in_this_tab_is_one_post_and_one_refetch_by_the_stream", async () => {
    const p = (current = page({ onInsert: "write" }));
    await loaded(p);
    const before = p.ids();
    const transaction = p.projects.insert({ id: "pending", n: 1 });
    await transaction.isPersisted.promise;
    const [created] = p.ids().filter((id) => id !== "pending" && !before.includes(id));
    await waitFor(() => expect(p.fetches()).toBeGreaterThanOrEqual(2)); // the stream's refetch
    await heardProgress(p.updates, 1);
    p.updates.invalidator.flush();
    await waitFor(p.idle);
    expect(p.ids()).not.toContain("pending");
    expect(created).toBeDefined();
    expect(p.fetches()).toBe(2);
  }, 30_000);

  it("test_with_a_handler_that_refetches_an_insert_in_this_tab_the_streams_frame_is_skipped", async () => {
    // TanStack DB's own handler (refetch after the POST): the POST's answer carries
    // Refetch-Notified, so the stream's frame for the same change is skipped for the refetch that
    // started after it (docs/js.md, "The tab that made the change"): one GET per insert, not two.
    const p = (current = page({ onInsert: "refetch" }));
    await loaded(p);
    const transaction = p.projects.insert({ id: "pending", n: 1 });
    await transaction.isPersisted.promise;
    await waitFor(() => expect(p.fetches()).toBeGreaterThanOrEqual(2));
    await heardProgress(p.updates, 1);
    p.updates.invalidator.flush();
    await waitFor(p.idle);
    expect(p.fetches()).toBe(2);
  }, 30_000);

  it("test_on_demand_each_loaded_subset_is_tagged_and_refetched_once", async () => {
    const p = (current = page({ onDemand: true }));
    await loaded(p);
    const keys = p.queries().map((query) => query.queryKey);
    expect(keys).toHaveLength(1);
    expect(keys[0]).toHaveLength(2); // ["projects", <the live query's where>]
    const id = await createProject();
    await waitFor(() => expect(p.ids()).toContain(id));
    await heardProgress(p.updates, 1);
    p.updates.invalidator.flush();
    await waitFor(p.idle);
    expect(p.fetches()).toBe(2);
  }, 30_000);
});
