// @vitest-environment happy-dom
// The SWR adapter on real React components and real SWR 2 hooks, each test with its own cache.
import { act, cleanup, render } from "@testing-library/react";
import type { ReactNode } from "react";
import useSWR, { SWRConfig, type SWRConfiguration } from "swr";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { UpdatesProvider, autoRefetch, useUpdateStatus } from "../src/swr.js";
import { DataApi, projectsChanged } from "./data-api.js";
import { ManualSource } from "./helpers.js";
import type { UpdateEvent } from "../src/protocol.js";

let source: ManualSource;
let api: DataApi;
let shown: Record<string, unknown> = {};

// The SWR equivalent of staleTime: Infinity: the stream, not SWR's own triggers, says when to refetch.
const config: SWRConfiguration = {
  provider: () => new Map(),
  revalidateOnFocus: false,
  revalidateOnReconnect: false,
  revalidateIfStale: false,
};

beforeEach(() => {
  vi.useFakeTimers();
  source = new ManualSource();
  api = new DataApi();
  shown = {};
});

afterEach(() => {
  cleanup();
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

const tagged = [autoRefetch("projects")];

function Projects({ name = "projects" }: { name?: string }) {
  const { data } = useSWR("/api/projects", () => api.queryFn(), { use: tagged });
  shown[name] = data;
  return null;
}

function App({ children }: { children?: ReactNode }) {
  return (
    <SWRConfig value={config}>
      <UpdatesProvider stream={source}>{children}</UpdatesProvider>
    </SWRConfig>
  );
}

describe("SWR: autoRefetch middleware, mutate with a key filter", () => {
  it("test_burst_of_10_updates_on_a_key_shown_by_3_components_gives_one_fetch_per_window_none_overlapping", async () => {
    render(
      <App>
        <Projects name="a" />
        <Projects name="b" />
        <Projects name="c" />
      </App>,
    );
    await advance(100);
    expect(shown).toEqual({ a: 0, b: 0, c: 0 });
    expect(api.calls).toBe(1);
    for (let i = 0; i < 10; i++) {
      api.version++;
      emit(projectsChanged());
      await advance(10);
    }
    await advance(500);
    // A fetch is never started while one of the key is in flight (SWR would keep both and drop
    // the older answer); updates during one give exactly one more after it: 3 for 10 updates.
    expect(api.calls - 1).toBe(3);
    expect(api.overlapping).toBe(0);
    expect(shown).toEqual({ a: 10, b: 10, c: 10 });
  });

  it("test_resync_revalidates_every_tagged_key_once_and_nothing_else", async () => {
    const untagged = vi.fn(async () => "x");
    function Config() {
      useSWR("/api/config", untagged);
      return null;
    }
    render(
      <App>
        <Config />
        <Projects />
      </App>,
    );
    await advance(100);
    api.version = 3;
    emit({ kind: "invalidate-all", reason: "resync", cursor: "c" });
    await advance(500);
    expect(api.calls).toBe(2);
    expect(untagged).toHaveBeenCalledTimes(1);
    expect(shown["projects"]).toBe(3);
  });

  it("test_an_update_during_the_first_fetch_is_not_lost", async () => {
    render(
      <App>
        <Projects />
      </App>,
    );
    await advance(10);
    api.version = 1;
    emit(projectsChanged());
    await advance(500);
    expect(api.calls).toBe(2);
    expect(api.overlapping).toBe(0);
    expect(shown["projects"]).toBe(1);
  });

  it("test_a_key_nobody_shows_is_only_marked_and_revalidated_when_shown_again", async () => {
    const view = render(
      <App>
        <Projects />
      </App>,
    );
    await advance(100);
    view.rerender(<App />);
    api.version = 1;
    emit(projectsChanged());
    await advance(500);
    expect(api.calls).toBe(1);

    view.rerender(
      <App>
        <Projects name="again" />
      </App>,
    );
    await advance(100);
    expect(api.calls).toBe(2);
    expect(shown["again"]).toBe(1);
  });

  it("test_a_key_remounted_while_a_fetch_of_it_is_in_flight_gets_one_more_after_it_not_a_second_at_once", async () => {
    // Found by the model test: the first fetch outlives its component, the pass marks the key,
    // and a new component mounts while that fetch is still in flight.
    const view = render(<App />);
    api.version = 1;
    emit(projectsChanged());
    view.rerender(
      <App>
        <Projects />
      </App>,
    );
    view.rerender(<App />);
    await advance(25);
    view.rerender(
      <App>
        <Projects name="again" />
      </App>,
    );
    await advance(500);
    expect(api.overlapping).toBe(0);
    expect(api.calls).toBe(2);
    expect(shown["again"]).toBe(1);
  });

  it("test_a_hidden_tab_defers_revalidation_until_visible", async () => {
    // The page's own visibility, as the key invalidator reads it by default.
    let visibility: DocumentVisibilityState = "visible";
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => visibility });
    const setVisibility = (next: DocumentVisibilityState) => {
      visibility = next;
      act(() => void document.dispatchEvent(new Event("visibilitychange")));
    };
    try {
      render(
        <App>
          <Projects />
        </App>,
      );
      await advance(100);
      setVisibility("hidden");
      for (let i = 0; i < 5; i++) {
        api.version++;
        emit(projectsChanged());
        await advance(100);
      }
      expect(api.calls).toBe(1);
      setVisibility("visible");
      await advance(500);
      expect(api.calls).toBe(2);
      expect(shown["projects"]).toBe(5);
    } finally {
      Reflect.deleteProperty(document, "visibilityState");
    }
  });

  it("test_keyed_updates_reach_only_keys_tagged_with_that_key_or_the_whole_type", async () => {
    const fetched: string[] = [];
    const fetcher = (key: string) => {
      fetched.push(key);
      return Promise.resolve(key);
    };
    function Keys() {
      useSWR("/p/42", fetcher, { use: [autoRefetch("projects", { keys: [42] })] });
      useSWR("/p/7", fetcher, { use: [autoRefetch("projects", { keys: [7] })] });
      useSWR("/p", fetcher, { use: tagged });
      return null;
    }
    render(
      <App>
        <Keys />
      </App>,
    );
    await advance(100);
    fetched.length = 0;
    emit(projectsChanged(["42"]));
    await advance(100);
    expect(fetched.sort()).toEqual(["/p", "/p/42"]);
  });

  it("test_use_update_status_follows_the_stream_and_a_passed_stream_stays_open", async () => {
    const seen: string[] = [];
    function Indicator() {
      seen.push(useUpdateStatus());
      return null;
    }
    render(
      <App>
        <Indicator />
      </App>,
    );
    await advance(10);
    expect(seen.at(-1)).toBe("connecting");
    act(() => source.setStatus("open"));
    expect(seen.at(-1)).toBe("open");
    cleanup();
    expect(source.listenerCount).toBe(0);
    expect(source.closed).toBe(0);
  });
});
