// @vitest-environment happy-dom
// The Vue adapter on real Vue components and a real vue-query QueryClient (its own query-core copy).
import { QueryClient, VueQueryPlugin, focusManager, useQuery } from "@tanstack/vue-query";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createApp, defineComponent, h, nextTick, ref, type App, type Component } from "vue";

import { UpdatesPlugin, useAutoRefetch, useSSEUpdates, useUpdateStatus } from "../src/vue.js";
import { DataApi, projectsChanged } from "./data-api.js";
import { ManualSource } from "./helpers.js";

let client: QueryClient;
let source: ManualSource;
let api: DataApi;
let apps: App[] = [];

beforeEach(() => {
  vi.useFakeTimers();
  client = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
  source = new ManualSource();
  api = new DataApi();
});

afterEach(() => {
  for (const app of apps) app.unmount();
  apps = [];
  document.body.innerHTML = "";
  client.clear();
  focusManager.setFocused(undefined);
  vi.useRealTimers();
});

async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  await nextTick();
}

/** Mounts `root` in a fresh app with VueQueryPlugin and the update stream, like a real main.ts. */
function mount(root: Component): HTMLElement {
  const element = document.createElement("div");
  document.body.append(element);
  const app = createApp(root);
  app.use(VueQueryPlugin, { queryClient: client });
  app.use(UpdatesPlugin, { stream: source });
  app.mount(element);
  apps.push(app);
  return element;
}

const Projects = defineComponent({
  props: { name: { type: String, default: "projects" } },
  setup(props) {
    const query = useQuery({ queryKey: ["projects"], queryFn: api.queryFn });
    useAutoRefetch(["projects"], "projects");
    return () => h("p", { "data-name": props.name }, String(query.data.value ?? "loading"));
  },
});

function shown(element: HTMLElement): Record<string, string> {
  return Object.fromEntries([...element.querySelectorAll("p")].map((p) => [p.dataset["name"], p.textContent]));
}

describe("Vue: useAutoRefetch, UpdatesPlugin and the core invalidator", () => {
  it("test_burst_of_10_updates_on_a_query_shown_by_3_components_gives_one_fetch_per_window_none_aborted", async () => {
    const element = mount(() => [h(Projects, { name: "a" }), h(Projects, { name: "b" }), h(Projects, { name: "c" })]);
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
    mount(() => h("div"));
    void client.prefetchQuery({ queryKey: ["projects"], queryFn: api.queryFn, meta: { updates: ["projects"] } });
    await advance(100);
    api.version = 1;
    source.emit(projectsChanged());
    await advance(500);
    expect(api.calls).toBe(1);
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(true);

    const Later = defineComponent({
      setup() {
        const query = useQuery({ queryKey: ["projects"], queryFn: api.queryFn });
        return () => h("p", { "data-name": "later" }, String(query.data.value));
      },
    });
    const element = mount(Later);
    await advance(100);
    expect(api.calls).toBe(2);
    expect(shown(element)).toEqual({ later: "1" });
  });

  it("test_a_tag_outlives_the_component_and_follows_a_reactive_key", async () => {
    const id = ref(1);
    const visible = ref(true);
    const Detail = defineComponent({
      setup() {
        const query = useQuery({ queryKey: ["project", id], queryFn: api.queryFn });
        useAutoRefetch(() => ["project", id.value], "projects", { keys: () => [id.value] });
        return () => h("p", { "data-name": "detail" }, String(query.data.value));
      },
    });
    const element = mount(() => (visible.value ? h(Detail) : null));
    await advance(100);
    id.value = 2;
    await advance(100);
    expect(api.calls).toBe(2);

    api.version = 5;
    source.emit(projectsChanged(["2"]));
    await advance(200);
    expect(api.calls).toBe(3);
    expect(shown(element)).toEqual({ detail: "5" });

    visible.value = false;
    await advance(10);
    source.emit(projectsChanged(["1"]));
    await advance(200);
    // No component shows project 1 (nor 2) any more: its tag stayed, so it is marked, not fetched.
    expect(api.calls).toBe(3);
    expect(client.getQueryState(["project", 1])?.isInvalidated).toBe(true);
    expect(client.getQueryState(["project", 2])?.isInvalidated).toBe(false);
  });

  it("test_use_auto_refetch_before_use_query_tags_the_query_created_after_it", async () => {
    const First = defineComponent({
      setup() {
        useAutoRefetch(["projects"], "projects");
        const query = useQuery({ queryKey: ["projects"], queryFn: api.queryFn });
        return () => h("p", { "data-name": "first" }, String(query.data.value));
      },
    });
    const element = mount(First);
    await advance(100);
    api.version = 1;
    source.emit(projectsChanged());
    await advance(200);
    expect(api.calls).toBe(2);
    expect(shown(element)).toEqual({ first: "1" });
  });

  it("test_a_hidden_tab_defers_refetches_until_visible", async () => {
    const element = mount(Projects);
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

  it("test_resync_refetches_every_tagged_query_and_nothing_else", async () => {
    const untagged = vi.fn(async () => "x");
    const Both = defineComponent({
      setup() {
        useQuery({ queryKey: ["config"], queryFn: untagged });
        return () => h(Projects);
      },
    });
    const element = mount(Both);
    await advance(100);
    api.version = 3;
    source.emit({ kind: "invalidate-all", reason: "resync", cursor: "c" });
    await advance(500);
    expect(api.calls).toBe(2);
    expect(untagged).toHaveBeenCalledTimes(1);
    expect(shown(element)).toEqual({ projects: "3" });
  });

  it("test_use_sse_updates_follows_a_reactive_enabled_and_the_status_is_shown", async () => {
    const enabled = ref(false);
    const Root = defineComponent({
      setup() {
        useSSEUpdates(() => ({ stream: source, enabled: enabled.value }));
        const status = useUpdateStatus();
        return () => h("p", { "data-name": "status" }, status.value);
      },
    });
    const element = document.createElement("div");
    document.body.append(element);
    const app = createApp(Root).use(VueQueryPlugin, { queryClient: client });
    app.mount(element);
    apps.push(app);
    await nextTick();
    expect(shown(element)).toEqual({ status: "closed" });
    expect(source.started).toBe(0);

    enabled.value = true;
    await nextTick();
    expect(source.started).toBe(1);
    source.setStatus("open");
    await nextTick();
    expect(shown(element)).toEqual({ status: "open" });

    app.unmount();
    apps = [];
    expect(source.listenerCount).toBe(0);
    expect(source.closed).toBe(0); // a stream passed in belongs to the caller
  });
});
