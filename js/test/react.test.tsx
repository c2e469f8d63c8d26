// @vitest-environment happy-dom
import { QueryClient, QueryClientProvider, focusManager, useQuery } from "@tanstack/react-query";
import { act, cleanup, render } from "@testing-library/react";
import { StrictMode, type ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { UpdateEvent } from "../src/protocol.js";
import { CursorTracker } from "../src/cursors.js";
import { UpdatesProvider, useAutoRefetch, useSSEUpdates, useUpdateLog, useUpdateStatus } from "../src/react.js";
import { UpdateStream } from "../src/stream/stream.js";
import { FakeServer, ManualSource, frame, hello, settle, silentLogger } from "./helpers.js";

/** A fake data API: every request reads the version when it starts and answers 50 ms later. */
class DataApi {
  version = 0;
  calls = 0;
  aborted = 0;
  completed = 0;

  queryFn = ({ signal }: { signal: AbortSignal }): Promise<number> => {
    this.calls++;
    const version = this.version;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.completed++;
        resolve(version);
      }, 50);
      signal.addEventListener("abort", () => {
        this.aborted++;
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      });
    });
  };
}

let client: QueryClient;
let source: ManualSource;
let api: DataApi;

beforeEach(() => {
  vi.useFakeTimers();
  client = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
  source = new ManualSource();
  api = new DataApi();
});

afterEach(() => {
  cleanup();
  client.clear();
  focusManager.setFocused(undefined);
  vi.useRealTimers();
});

async function advance(ms: number): Promise<void> {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

function emit(event: UpdateEvent): void {
  act(() => source.emit(event));
}

const projects = (keys?: string[]): UpdateEvent => ({
  kind: "invalidate",
  updates: [keys ? { type: "projects", keys } : { type: "projects" }],
  cursor: null,
});

let lastData: Record<string, unknown> = {};

function Projects({ name = "projects" }: { name?: string }) {
  const query = useAutoRefetch(useQuery({ queryKey: ["projects"], queryFn: api.queryFn }), "projects");
  lastData[name] = query.data;
  return null;
}

function App({ children }: { children: ReactNode }) {
  return (
    <QueryClientProvider client={client}>
      <UpdatesProvider stream={source}>{children}</UpdatesProvider>
    </QueryClientProvider>
  );
}

async function mountLoaded(ui: ReactNode): Promise<void> {
  lastData = {};
  render(<App>{ui}</App>);
  await advance(100);
}

describe("useAutoRefetch and the cache-level invalidator", () => {
  it("test_burst_of_10_updates_gives_few_fetches_none_aborted_and_fresh_data", async () => {
    await mountLoaded(
      <>
        <Projects name="a" />
        <Projects name="b" />
        <Projects name="c" />
      </>,
    );
    expect(api.calls).toBe(1);
    for (let i = 0; i < 10; i++) {
      api.version++;
      emit(projects());
      await advance(10);
    }
    await advance(500);

    // Updates at 0..90 ms, a 25 ms window, a 50 ms API: the first pass starts a fetch at 25 ms;
    // updates during it mark it dirty, so one more at 75 ms and one more at 125 ms, which sees
    // the last update. Not one per update, nor one per component (3 x 10 = 30).
    expect(api.calls - 1).toBe(3);
    expect(api.aborted).toBe(0);
    expect(lastData).toEqual({ a: 10, b: 10, c: 10 });
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(false);
  });

  it("test_an_update_during_a_fetch_gives_exactly_one_more_fetch_after_it", async () => {
    await mountLoaded(<Projects />);
    api.version = 1;
    emit(projects());
    await advance(30); // flush at 25 ms starts fetch #2, in flight until 75 ms
    expect(api.calls).toBe(2);
    api.version = 2;
    emit(projects());
    await advance(30); // flush at 55 ms: joins the in-flight fetch, does not abort it
    expect(api.calls).toBe(2);
    await advance(500);
    expect(api.calls).toBe(3);
    expect(api.aborted).toBe(0);
    expect(lastData["projects"]).toBe(2);
  });

  it("test_an_update_during_the_initial_fetch_is_not_lost", async () => {
    lastData = {};
    render(
      <App>
        <Projects />
      </App>,
    );
    await advance(10);
    api.version = 1;
    emit(projects());
    await advance(500);
    expect(api.calls).toBe(2);
    expect(api.aborted).toBe(0);
    expect(lastData["projects"]).toBe(1);
  });

  it("test_unrelated_types_refetch_nothing", async () => {
    await mountLoaded(<Projects />);
    emit({ kind: "invalidate", updates: [{ type: "compute" }], cursor: null });
    await advance(500);
    expect(api.calls).toBe(1);
  });

  it("test_a_use_auto_refetch_tag_outlives_the_component_until_the_query_leaves_the_cache", async () => {
    lastData = {};
    const view = render(
      <App>
        <Projects />
      </App>,
    );
    await advance(100);
    view.rerender(<App>{null}</App>);
    api.version = 1;
    emit(projects());
    await advance(500);
    // Not shown anywhere: only marked stale (no fetch), but marked, despite staleTime: Infinity.
    expect(api.calls).toBe(1);
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(true);
    view.rerender(
      <App>
        <Projects />
      </App>,
    );
    await advance(100);
    expect(api.calls).toBe(2);
    expect(lastData["projects"]).toBe(1);

    // Once the query left the cache its tags went with it: a new query is tagged only by a new hook.
    view.rerender(<App>{null}</App>);
    client.removeQueries({ queryKey: ["projects"] });
    void client.prefetchQuery({ queryKey: ["projects"], queryFn: api.queryFn });
    await advance(100);
    emit(projects());
    await advance(500);
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(false);
  });

  it("test_a_meta_tagged_query_needs_no_wrapper", async () => {
    function Tagged() {
      useQuery({ queryKey: ["list"], queryFn: api.queryFn, meta: { updates: ["projects"] } });
      return null;
    }
    await mountLoaded(<Tagged />);
    api.version = 1;
    emit(projects());
    await advance(500);
    expect(api.calls).toBe(2);
    expect(client.getQueryData(["list"])).toBe(1);
  });

  it("test_keyed_updates_reach_only_queries_of_that_key_or_the_whole_type", async () => {
    const fetched: string[] = [];
    const fn = (name: string) => async () => {
      fetched.push(name);
      return name;
    };
    function Queries() {
      useQuery({ queryKey: ["p", 42], queryFn: fn("p42"), meta: { updates: [{ type: "projects", keys: [42] }] } });
      useQuery({ queryKey: ["p", 7], queryFn: fn("p7"), meta: { updates: [{ type: "projects", keys: ["7"] }] } });
      useQuery({ queryKey: ["p"], queryFn: fn("list"), meta: { updates: "projects" } });
      const detail = useQuery({ queryKey: ["p", 9], queryFn: fn("p9") });
      useAutoRefetch(detail, "projects", { keys: [9] });
      return null;
    }
    await mountLoaded(<Queries />);
    fetched.length = 0;

    emit(projects(["42"]));
    await advance(100);
    expect(fetched.sort()).toEqual(["list", "p42"]);

    fetched.length = 0;
    emit(projects(["9", "8"]));
    await advance(100);
    expect(fetched.sort()).toEqual(["list", "p9"]);

    fetched.length = 0;
    emit(projects());
    await advance(100);
    expect(fetched.sort()).toEqual(["list", "p42", "p7", "p9"]);
  });

  it("test_inactive_queries_are_only_marked_stale_and_refetch_on_mount", async () => {
    await mountLoaded(null);
    void client.prefetchQuery({ queryKey: ["projects"], queryFn: api.queryFn, meta: { updates: ["projects"] } });
    await advance(100);
    expect(api.calls).toBe(1);
    api.version = 1;
    emit(projects());
    await advance(500);
    expect(api.calls).toBe(1);
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(true);

    function Later() {
      lastData["later"] = useQuery({ queryKey: ["projects"], queryFn: api.queryFn }).data;
      return null;
    }
    render(
      <App>
        <Later />
      </App>,
    );
    await advance(100);
    expect(api.calls).toBe(2);
    expect(lastData["later"]).toBe(1);
  });

  it("test_a_hidden_tab_defers_refetches_until_visible", async () => {
    function NoFocusRefetch() {
      const query = useQuery({ queryKey: ["projects"], queryFn: api.queryFn, refetchOnWindowFocus: false });
      lastData["projects"] = useAutoRefetch(query, ["projects", "compute"]).data;
      return null;
    }
    await mountLoaded(<NoFocusRefetch />);
    act(() => focusManager.setFocused(false));
    for (let i = 0; i < 5; i++) {
      api.version++;
      emit(projects());
      await advance(100);
    }
    expect(api.calls).toBe(1);
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(true);

    act(() => focusManager.setFocused(true));
    await advance(500);
    expect(api.calls).toBe(2);
    expect(lastData["projects"]).toBe(5);
  });

  it("test_becoming_visible_fetches_once_even_with_tanstack_focus_refetch", async () => {
    await mountLoaded(<Projects />);
    act(() => focusManager.setFocused(false));
    api.version = 1;
    emit(projects());
    await advance(100);
    act(() => focusManager.setFocused(true));
    await advance(500);
    expect(api.calls).toBe(2);
    expect(api.aborted).toBe(0);
    expect(lastData["projects"]).toBe(1);
  });

  it("test_invalidate_all_refetches_every_tagged_query_and_nothing_else", async () => {
    const untagged = vi.fn(async () => "x");
    function Both() {
      useQuery({ queryKey: ["config"], queryFn: untagged });
      return <Projects />;
    }
    await mountLoaded(<Both />);
    api.version = 3;
    emit({ kind: "invalidate-all", reason: "resync", cursor: "c" });
    await advance(500);
    expect(api.calls).toBe(2);
    expect(untagged).toHaveBeenCalledTimes(1);
    expect(lastData["projects"]).toBe(3);
  });

  it("test_use_update_status_follows_the_stream", async () => {
    const seen: string[] = [];
    function Indicator() {
      seen.push(useUpdateStatus());
      return null;
    }
    await mountLoaded(<Indicator />);
    expect(seen.at(-1)).toBe("connecting");
    act(() => source.setStatus("open"));
    expect(seen.at(-1)).toBe("open");
    act(() => source.setStatus("unauthorized"));
    expect(seen.at(-1)).toBe("unauthorized");
    cleanup();
    expect(source.listenerCount).toBe(0);
    expect(source.closed).toBe(0); // a stream passed in belongs to the caller
  });
});

describe("UpdatesProvider with a real UpdateStream", () => {
  it("test_frames_from_the_wire_refetch_the_query_and_fill_the_log", async () => {
    const server = new FakeServer();
    const stream = new UpdateStream({ url: "http://app.test/api/updates", fetch: server.fetch, logger: silentLogger() });
    let log: readonly unknown[] = [];
    let status = "";
    function Debug() {
      log = useUpdateLog();
      status = useUpdateStatus();
      return null;
    }
    lastData = {};
    render(
      <QueryClientProvider client={client}>
        <UpdatesProvider stream={stream}>
          <Projects />
          <Debug />
        </UpdatesProvider>
      </QueryClientProvider>,
    );
    await advance(100);
    await act(async () => {
      server.last.write(hello("e1.1"));
      await settle();
    });
    expect(status).toBe("open");
    api.version = 1;
    await act(async () => {
      server.last.write(frame("invalidate", { updates: [{ type: "projects", keys: ["1"] }] }, "e1.2"));
      await settle();
    });
    await advance(500);
    expect(api.calls).toBe(2);
    expect(lastData["projects"]).toBe(1);
    expect(log).toHaveLength(2);
    stream.close();
  });
});

describe("useSSEUpdates creating its own stream", () => {
  it("test_opens_one_stream_with_the_options_and_closes_it_on_unmount_also_in_strict_mode", async () => {
    const server = new FakeServer();
    let token = "t1";
    function Root({ children }: { children?: ReactNode }) {
      return (
        <StrictMode>
          <QueryClientProvider client={client}>
            <UpdatesProvider
              url="http://app.test/api/updates"
              types={["projects"]}
              share={false}
              fetch={server.fetch}
              headers={() => ({ Authorization: `Bearer ${token}` })}
              logger={silentLogger()}
            >
              {children}
            </UpdatesProvider>
          </QueryClientProvider>
        </StrictMode>
      );
    }
    lastData = {};
    const view = render(
      <Root>
        <Projects />
      </Root>,
    );
    await advance(100);
    const live = server.connections.filter((c) => !c.aborted);
    expect(live).toHaveLength(1);
    expect(live[0]!.url.searchParams.get("types")).toBe("projects");
    expect(live[0]!.headers.get("authorization")).toBe("Bearer t1");

    // A re-render with a new headers function does not reconnect; the next connect uses it.
    token = "t2";
    view.rerender(
      <Root>
        <Projects />
      </Root>,
    );
    await advance(10);
    expect(server.connections.filter((c) => !c.aborted)).toHaveLength(1);

    // React 18's StrictMode aborts and repeats the first fetch (React 19 keeps it): count from here.
    const loaded = api.calls - api.aborted;
    expect(loaded).toBe(1);
    api.version = 7;
    await act(async () => {
      live[0]!.write(hello("e1.1"));
      live[0]!.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.2"));
      await settle();
    });
    await advance(500);
    // The update and the no-cursor fallback of the hello share one pass: one fetch.
    expect(api.calls - api.aborted).toBe(2);
    expect(lastData["projects"]).toBe(7);

    view.unmount();
    await advance(10);
    expect(server.connections.every((c) => c.aborted)).toBe(true);
  });
});

describe("the architecture note's layout: useSSEUpdates() first in the page component", () => {
  it("test_the_first_connect_waits_for_the_queries_started_in_the_same_render", async () => {
    const server = new FakeServer();
    const cursors = new CursorTracker();
    function Page() {
      useSSEUpdates({ url: "http://app.test/api/updates", share: false, fetch: server.fetch, cursors, logger: silentLogger() });
      const projects = useQuery({
        queryKey: ["projects"],
        queryFn: () =>
          new Promise<number>((resolve) =>
            setTimeout(() => {
              cursors.note("e1.3");
              resolve(1);
            }, 50),
          ),
        meta: { updates: ["projects"] },
      });
      return <p>{projects.data}</p>;
    }
    render(
      <QueryClientProvider client={client}>
        <Page />
      </QueryClientProvider>,
    );
    await advance(10);
    // The query of the same render is in flight: the stream waits for its cursor.
    expect(server.connections).toHaveLength(0);
    await advance(50);
    expect(server.connections).toHaveLength(1);
    expect(server.last.headers.get("last-event-id")).toBe("e1.3");
  });
});
