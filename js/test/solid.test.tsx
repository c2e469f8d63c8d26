/** @jsxImportSource solid-js */
// The Solid adapter on real Solid components (compiled by vite-plugin-solid, the browser build of
// solid-js) and a real solid-query QueryClient (its own query-core copy).
import { QueryClient, QueryClientProvider, focusManager, useQuery } from "@tanstack/solid-query";
import { createSignal, For, Show, type JSX } from "solid-js";
import { render } from "solid-js/web";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { UpdatesProvider, useAutoRefetch, useUpdateStatus } from "../src/solid.js";
import { DataApi, projectsChanged } from "./data-api.js";
import { ManualSource } from "./helpers.js";

let client: QueryClient;
let source: ManualSource;
let api: DataApi;
let disposers: (() => void)[] = [];

beforeEach(() => {
  vi.useFakeTimers();
  client = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
  source = new ManualSource();
  api = new DataApi();
});

afterEach(() => {
  for (const dispose of disposers) dispose();
  disposers = [];
  document.body.innerHTML = "";
  client.clear();
  focusManager.setFocused(undefined);
  vi.useRealTimers();
});

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

function mount(ui: () => JSX.Element): HTMLElement {
  const element = document.createElement("div");
  document.body.append(element);
  disposers.push(
    render(
      () => (
        <QueryClientProvider client={client}>
          <UpdatesProvider stream={source}>{ui()}</UpdatesProvider>
        </QueryClientProvider>
      ),
      element,
    ),
  );
  return element;
}

function Projects(props: { name?: string }) {
  const query = useAutoRefetch(
    useQuery(() => ({ queryKey: ["projects"], queryFn: api.queryFn })),
    "projects",
  );
  return <p data-name={props.name ?? "projects"}>{String(query.data ?? "loading")}</p>;
}

function shown(element: HTMLElement): Record<string, string> {
  return Object.fromEntries([...element.querySelectorAll("p")].map((p) => [p.dataset["name"], p.textContent]));
}

describe("Solid: useAutoRefetch, UpdatesProvider and the core invalidator", () => {
  it("test_burst_of_10_updates_on_a_query_shown_by_3_components_gives_one_fetch_per_window_none_aborted", async () => {
    const element = mount(() => <For each={["a", "b", "c"]}>{(name) => <Projects name={name} />}</For>);
    await advance(100);
    expect(shown(element)).toEqual({ a: "0", b: "0", c: "0" });
    expect(api.calls).toBe(1);
    for (let i = 0; i < 10; i++) {
      api.version++;
      source.emit(projectsChanged());
      await advance(10);
    }
    await advance(500);
    // As in React: a pass at 25 ms starts a fetch; updates during it give exactly one more after
    // it, twice: 3 fetches for 10 updates and 3 components (not 10, not 30), none aborted.
    expect(api.calls - 1).toBe(3);
    expect(api.aborted).toBe(0);
    expect(shown(element)).toEqual({ a: "10", b: "10", c: "10" });
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(false);
  });

  it("test_inactive_queries_are_only_marked_stale_and_refetch_on_mount", async () => {
    const [showLater, setShowLater] = createSignal(false);
    function Later() {
      const query = useQuery(() => ({ queryKey: ["projects"], queryFn: api.queryFn }));
      return <p data-name="later">{String(query.data)}</p>;
    }
    const element = mount(() => (
      <Show when={showLater()}>
        <Later />
      </Show>
    ));
    void client.prefetchQuery({ queryKey: ["projects"], queryFn: api.queryFn, meta: { updates: ["projects"] } });
    await advance(100);
    api.version = 1;
    source.emit(projectsChanged());
    await advance(500);
    expect(api.calls).toBe(1);
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(true);

    setShowLater(true);
    await advance(100);
    expect(api.calls).toBe(2);
    expect(shown(element)).toEqual({ later: "1" });
  });

  it("test_a_use_auto_refetch_tag_outlives_the_component", async () => {
    const [visible, setVisible] = createSignal(true);
    mount(() => (
      <Show when={visible()}>
        <Projects />
      </Show>
    ));
    await advance(100);
    setVisible(false);
    api.version = 1;
    source.emit(projectsChanged());
    await advance(500);
    expect(api.calls).toBe(1);
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(true);
  });

  it("test_a_hidden_tab_defers_refetches_until_visible", async () => {
    const element = mount(() => <Projects />);
    await advance(100);
    focusManager.setFocused(false);
    for (let i = 0; i < 5; i++) {
      api.version++;
      source.emit(projectsChanged());
      await advance(100);
    }
    expect(api.calls).toBe(1);
    focusManager.setFocused(true);
    await advance(500);
    expect(api.calls).toBe(2);
    expect(api.aborted).toBe(0);
    expect(shown(element)).toEqual({ projects: "5" });
  });

  it("test_resync_refetches_every_tagged_query_and_the_status_is_shown", async () => {
    const untagged = vi.fn(async () => "x");
    function Status() {
      const status = useUpdateStatus();
      return <p data-name="status">{status()}</p>;
    }
    function Config() {
      useQuery(() => ({ queryKey: ["config"], queryFn: untagged }));
      return null;
    }
    const element = mount(() => (
      <>
        <Status />
        <Config />
        <Projects />
      </>
    ));
    await advance(100);
    expect(shown(element)["status"]).toBe("connecting");
    source.setStatus("open");
    expect(shown(element)["status"]).toBe("open");
    api.version = 3;
    source.emit({ kind: "invalidate-all", reason: "resync", cursor: "c" });
    await advance(500);
    expect(api.calls).toBe(2);
    expect(untagged).toHaveBeenCalledTimes(1);
    expect(shown(element)).toEqual({ status: "open", projects: "3" });

    for (const dispose of disposers) dispose();
    disposers = [];
    expect(source.listenerCount).toBe(0);
    expect(source.closed).toBe(0); // a stream passed in belongs to the caller
  });

  it("test_the_provider_follows_a_signal_and_a_recreated_stream_is_started_again", async () => {
    const [on, setOn] = createSignal(true);
    const element = document.createElement("div");
    document.body.append(element);
    disposers.push(
      render(
        () => (
          <QueryClientProvider client={client}>
            <UpdatesProvider stream={source} enabled={on()}>
              <Projects />
            </UpdatesProvider>
          </QueryClientProvider>
        ),
        element,
      ),
    );
    await advance(100);
    expect(source.started).toBe(1);
    setOn(false);
    await advance(10);
    expect(source.listenerCount).toBe(0);
    api.version = 1;
    setOn(true);
    await advance(10);
    expect(source.started).toBe(2);
    source.emit(projectsChanged());
    await advance(200);
    expect(shown(element)).toEqual({ projects: "1" });
  });
});
