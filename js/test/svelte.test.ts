// @vitest-environment happy-dom
// The Svelte adapter on real Svelte 5 components (compiled by @sveltejs/vite-plugin-svelte, the
// browser build of svelte) and a real svelte-query 6 QueryClient (its own query-core copy).
import { QueryClient, focusManager } from "@tanstack/svelte-query";
import { flushSync, mount, unmount } from "svelte";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import * as entry from "../src/svelte.js";
import { DataApi, projectsChanged } from "./data-api.js";
import { ManualSource } from "./helpers.js";
import { configFetches } from "./svelte/config.js";
import Harness from "./svelte/Harness.svelte";

let client: QueryClient;
let source: ManualSource;
let api: DataApi;
let mounted: Record<string, unknown>[] = [];

beforeEach(() => {
  vi.useFakeTimers();
  client = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
  source = new ManualSource();
  api = new DataApi();
  configFetches.count = 0;
});

afterEach(() => {
  for (const app of mounted) void unmount(app);
  mounted = [];
  document.body.innerHTML = "";
  client.clear();
  focusManager.setFocused(undefined);
  vi.useRealTimers();
});

async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  flushSync();
}

interface HarnessApi {
  show(views: string[]): void;
  setEnabled(enabled: boolean): void;
}

function start(initial: string[]): { element: HTMLElement; app: HarnessApi } {
  const element = document.createElement("div");
  document.body.append(element);
  const app = mount(Harness, { target: element, props: { client, source, api, initial } });
  mounted.push(app);
  flushSync();
  return { element, app: app as unknown as HarnessApi };
}

function shown(element: HTMLElement): Record<string, string> {
  return Object.fromEntries([...element.querySelectorAll("p")].map((p) => [p.dataset["name"], p.textContent]));
}

describe("Svelte: useAutoRefetch, useSSEUpdates and the core invalidator", () => {
  it("test_burst_of_10_updates_on_a_query_shown_by_3_components_gives_one_fetch_per_window_none_aborted", async () => {
    const { element } = start(["a", "b", "c"]);
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
    const { element, app } = start([]);
    void client.prefetchQuery({ queryKey: ["projects"], queryFn: api.queryFn, meta: { updates: ["projects"] } });
    await advance(100);
    api.version = 1;
    source.emit(projectsChanged());
    await advance(500);
    expect(api.calls).toBe(1);
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(true);

    app.show(["later"]);
    await advance(100);
    expect(api.calls).toBe(2);
    expect(shown(element)).toEqual({ later: "1" });
  });

  it("test_a_use_auto_refetch_tag_outlives_the_component", async () => {
    const { app } = start(["projects"]);
    await advance(100);
    app.show([]);
    await advance(10);
    api.version = 1;
    source.emit(projectsChanged());
    await advance(500);
    expect(api.calls).toBe(1);
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(true);
  });

  it("test_a_hidden_tab_defers_refetches_until_visible", async () => {
    const { element } = start(["projects"]);
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
    const { element } = start(["status", "config", "projects"]);
    await advance(100);
    expect(shown(element)["status"]).toBe("connecting");
    source.setStatus("open");
    flushSync();
    expect(shown(element)["status"]).toBe("open");
    api.version = 3;
    source.emit({ kind: "invalidate-all", reason: "resync", cursor: "c" });
    await advance(500);
    expect(api.calls).toBe(2);
    expect(configFetches.count).toBe(1);
    expect(shown(element)).toEqual({ status: "open", projects: "3" });
  });

  it("test_use_sse_updates_follows_state_and_a_passed_stream_stays_open_on_destroy", async () => {
    const { element, app } = start(["status"]);
    await advance(10);
    expect(source.started).toBe(1);
    app.setEnabled(false);
    await advance(10);
    expect(shown(element)).toEqual({ status: "closed" });
    expect(source.listenerCount).toBe(0);
    app.setEnabled(true);
    await advance(10);
    expect(source.started).toBe(2);
    expect(source.listenerCount).toBe(1);

    for (const mountedApp of mounted) void unmount(mountedApp);
    mounted = [];
    expect(source.listenerCount).toBe(0);
    expect(source.closed).toBe(0); // a stream passed in belongs to the caller
  });
});

describe("public API", () => {
  it("test_svelte_exports", () => {
    expect(Object.keys(entry).sort()).toEqual(["CursorTracker", "fromSchema", "useAutoRefetch", "useSSEUpdates", "useUpdateLog", "useUpdateStatus"]);
  });
});
