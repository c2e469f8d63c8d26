// @vitest-environment happy-dom
// Watched keys (docs/js.md, "Watched keys"): which keys the shown queries are tagged with, how a
// stream sends them (`watch=<type>:<key>`), and how a change reconnects it from its cursor, at
// most once per watchDelayMs and without a status change. The end-to-end check against the real
// Python server is in test/integration.test.ts.
import { QueryClient, QueryClientProvider, useQuery } from "@tanstack/react-query";
import { act, cleanup, render } from "@testing-library/react";
import { useState, type ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { StreamStatus, UpdateEvent } from "../src/protocol.js";
import { UpdatesProvider, useAutoRefetch } from "../src/react.js";
import { SharedUpdateStream } from "../src/stream/shared.js";
import { UpdateStream, type UpdateStreamOptions } from "../src/stream/stream.js";
import { KeyInvalidator } from "../src/invalidation/key-invalidator.js";
import { unionWatched, watchEntries, WATCH_MAX_KEYS, type Watched } from "../src/watch.js";
import { FakeLocks, FakeServer, frame, hello, settle, silentLogger } from "./helpers.js";

const watched = (entries: Record<string, string[] | "all">): Watched =>
  new Map(Object.entries(entries).map(([type, keys]) => [type, keys === "all" ? "all" : new Set(keys)]));

const watchOf = (url: URL) => url.searchParams.getAll("watch");

describe("watchEntries and unionWatched", () => {
  it("test_only_types_watched_by_key_appear_sorted_and_within_the_streams_types", () => {
    const w = watched({ compute: ["us-1", "eu-1"], projects: "all", images: [] });
    expect(watchEntries(w)).toEqual(["compute:eu-1", "compute:us-1"]);
    expect(watchEntries(w, ["projects"])).toEqual([]);
    expect(watchEntries(w, ["compute", "projects"])).toEqual(["compute:eu-1", "compute:us-1"]);
  });

  it("test_the_whole_type_wins_keys_add_up_and_an_absent_type_is_neutral", () => {
    const union = unionWatched([watched({ compute: ["eu-1"] }), watched({ compute: ["us-1"], projects: ["7"] }), watched({ projects: "all" })]);
    expect(union.get("compute")).toEqual(new Set(["eu-1", "us-1"]));
    expect(union.get("projects")).toBe("all");
  });

  it("test_more_keys_than_the_server_takes_or_a_too_long_key_watch_the_whole_type", () => {
    const many = Array.from({ length: WATCH_MAX_KEYS + 1 }, (_, i) => `k${i}`);
    expect(unionWatched([watched({ compute: many })]).get("compute")).toBe("all");
    expect(unionWatched([watched({ compute: ["x".repeat(129)] })]).get("compute")).toBe("all");
    expect(unionWatched([watched({ compute: ["x".repeat(128)] })]).get("compute")).toEqual(new Set(["x".repeat(128)]));
  });
});

describe("UpdateStream watching keys", () => {
  let server: FakeServer;
  let stream: UpdateStream;
  let events: UpdateEvent[];
  let statuses: StreamStatus[];

  function open(options: Partial<UpdateStreamOptions> = {}): UpdateStream {
    stream = new UpdateStream({
      url: "http://app.test/api/updates",
      fetch: server.fetch,
      random: () => 0.5,
      logger: silentLogger(),
      watchTypes: ["compute", "computee", "typo"],
      ...options,
    });
    stream.subscribe((event) => events.push(event));
    stream.onStatus((status) => statuses.push(status));
    stream.start();
    return stream;
  }

  beforeEach(() => {
    vi.useFakeTimers();
    server = new FakeServer();
    events = [];
    statuses = [];
  });

  afterEach(() => {
    stream?.close();
    vi.useRealTimers();
  });

  it("test_the_url_carries_one_percent_encoded_watch_per_key", async () => {
    open({ types: ["compute"], watched: watched({ compute: ["eu 1", "a&b=c", "ü:x"] }) });
    await settle();
    const url = server.last.url;
    expect(url.searchParams.get("types")).toBe("compute");
    expect(watchOf(url)).toEqual(["compute:a&b=c", "compute:eu 1", "compute:ü:x"]);
    expect(url.search).toContain("watch=compute%3Aa%26b%3Dc");
  });

  it("test_only_the_watch_types_are_sent_and_with_an_empty_list_none", async () => {
    open({ watchTypes: ["compute"], watched: watched({ compute: ["eu-1"], projects: ["42"] }) });
    await settle();
    expect(watchOf(server.last.url)).toEqual(["compute:eu-1"]);
    stream.close();
    open({ watchTypes: [], watched: watched({ compute: ["eu-1"] }) });
    await settle();
    expect(watchOf(server.last.url)).toEqual([]);
    // An explicit list wins over the hello's: a change of keys shown costs nothing, no reconnect.
    server.last.write(hello("e1.1", { types: ["compute"], watch: ["compute"] }));
    await settle();
    stream.watch(watched({ compute: ["us-1"] }));
    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(2);
    expect(watchOf(server.last.url)).toEqual([]);
  });

  it("test_by_default_the_hello_says_which_types_keys_are_sent_and_reconnect", async () => {
    const keys = (compute: string, projects: string) => watched({ compute: [compute], projects: [projects] });
    open({ watchTypes: undefined, watched: keys("eu-1", "42") });
    await settle();
    // Before any hello: every keyed type (the server ignores keys nothing polls per key).
    expect(watchOf(server.last.url)).toEqual(["compute:eu-1", "projects:42"]);
    server.last.write(hello("e1.1", { types: ["compute", "projects"], watch: ["compute"] }));
    await settle();
    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(1); // the projects key sent is no reason to reconnect
    // A detail page of another project: no reconnect.
    stream.watch(keys("eu-1", "43"));
    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(1);
    // Another region: one reconnect, from the cursor, with the keys of compute only.
    stream.watch(keys("us-1", "44"));
    await vi.advanceTimersByTimeAsync(100);
    expect(server.connections).toHaveLength(2);
    expect(watchOf(server.last.url)).toEqual(["compute:us-1"]);
    expect(server.last.headers.get("last-event-id")).toBe("e1.1");
    expect(statuses).toEqual(["open"]);
    // A hello without `watch` (an older server, or no keyed poller any more): no reconnect for
    // it or for later changes, and the next connection sends no keys.
    server.last.write(hello("e1.2", { types: ["compute", "projects"] }));
    await settle();
    stream.watch(keys("ap-1", "45"));
    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(2);
    server.last.end();
    await vi.advanceTimersByTimeAsync(2000);
    expect(server.connections).toHaveLength(3);
    expect(watchOf(server.last.url)).toEqual([]);
  });

  it("test_a_change_reconnects_once_per_100_ms_from_the_cursor_without_a_status_change", async () => {
    open({ types: ["compute"], watched: watched({ compute: ["eu-1"] }) });
    await settle();
    server.last.write(hello("e1.5"));
    server.last.write(frame("invalidate", { updates: [{ type: "compute", keys: ["eu-1"] }] }, "e1.6"));
    await settle();
    expect(statuses).toEqual(["open"]);

    // Three changes within 100 ms: one reconnect, with the last set.
    stream.watch(watched({ compute: ["eu-1", "us-1"] }));
    await vi.advanceTimersByTimeAsync(40);
    stream.watch(watched({ compute: ["us-1"] }));
    await vi.advanceTimersByTimeAsync(40);
    stream.watch(watched({ compute: ["us-1", "ap-1"] }));
    expect(server.connections).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(20);
    expect(server.connections).toHaveLength(2);
    expect(server.connections[0]!.aborted).toBe(true);
    expect(watchOf(server.last.url)).toEqual(["compute:ap-1", "compute:us-1"]);
    expect(server.last.headers.get("last-event-id")).toBe("e1.6");
    server.last.write(hello("e1.8", { id: false }));
    server.last.write(frame("invalidate", { updates: [{ type: "compute", keys: ["us-1"] }] }, "e1.8"));
    await settle();
    expect(statuses).toEqual(["open"]); // never "reconnecting"
    expect(events.map((event) => event.kind)).toEqual(["invalidate", "invalidate"]); // no invalidate-all
    expect(stream.cursor).toBe("e1.8");

    // Back to the same set within the window: no reconnect at all.
    stream.watch(watched({ compute: ["eu-1"] }));
    stream.watch(watched({ compute: ["ap-1", "us-1"] }));
    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(2);
  });

  it("test_refused_keys_cost_the_keys_not_the_stream", async () => {
    const warn = vi.fn<(...args: unknown[]) => void>();
    open({ watched: watched({ computee: ["eu-1"] }), logger: { warn, error: () => {} } });
    await settle();
    expect(watchOf(server.connections[0]!.url)).toEqual(["computee:eu-1"]);
    // (FakeServer answers each request at once: the refusal goes to a fresh one by hand.)
    server.autoRespond = false;
    stream.reconnect();
    await settle();
    server.last.respond(400, JSON.stringify({ error: "unknown_type", detail: "unknown update type in watch=: computee" }), "application/json");
    await settle();
    // At once, without the keys, and no "error" status.
    expect(watchOf(server.last.url)).toEqual([]);
    expect(server.connections).toHaveLength(3);
    expect(stream.status).not.toBe("error");
    expect(warn).toHaveBeenCalledWith(expect.stringContaining("watched keys refused"));
  });

  it("test_keys_of_types_the_hello_does_not_list_are_not_sent", async () => {
    const warn = vi.fn<(...args: unknown[]) => void>();
    open({ watched: watched({ compute: ["eu-1"], typo: ["x"] }), logger: { warn, error: () => {} } });
    await settle();
    server.last.write(hello("e1.1")); // types: projects, progress
    await settle();
    await vi.advanceTimersByTimeAsync(100);
    expect(server.connections).toHaveLength(2);
    expect(watchOf(server.last.url)).toEqual([]);
    expect(server.last.headers.get("last-event-id")).toBe("e1.1");
    expect(warn).not.toHaveBeenCalled(); // a good hello is no "malformed hello"
  });

  it("test_a_good_hello_is_no_malformed_hello_with_or_without_types", async () => {
    for (const types of [["compute"], undefined]) {
      const warn = vi.fn<(...args: unknown[]) => void>();
      open({ types, watched: watched({ compute: ["eu-1"] }), logger: { warn, error: () => {} } });
      await settle();
      server.last.write(hello("e1.1"));
      await settle();
      expect(stream.status).toBe("open");
      expect(warn).not.toHaveBeenCalled();
      stream.close();
    }
  });

  it("test_a_stream_waiting_to_reconnect_sends_the_new_keys_on_its_next_attempt", async () => {
    open({ types: ["compute"] });
    await settle();
    server.last.write(hello("e1.5"));
    await settle();
    server.last.end();
    await settle();
    expect(stream.status).toBe("reconnecting");
    stream.watch(watched({ compute: ["eu-1"] }));
    await vi.advanceTimersByTimeAsync(100);
    expect(server.connections).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(2);
    expect(watchOf(server.last.url)).toEqual(["compute:eu-1"]);
  });
});

describe("SharedUpdateStream watching keys", () => {
  it("test_the_leaders_connection_watches_the_union_of_every_tabs_keys", async () => {
    const server = new FakeServer();
    const locks = new FakeLocks();
    const channelName = `refetch-watch-${Math.random()}`;
    const tab = (keys: string[]) => {
      const stream = new SharedUpdateStream({
        url: "http://app.test/api/updates",
        types: ["compute"],
        watchTypes: ["compute"],
        fetch: server.fetch,
        locks,
        channelName,
        watchDelayMs: 10,
        logger: silentLogger(),
        watched: watched({ compute: keys }),
      });
      stream.start();
      return stream;
    };
    const until = async (check: () => boolean) => {
      for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
      expect(check()).toBe(true);
    };
    const leader = tab(["eu-1"]);
    await until(() => server.connections.length === 1);
    server.last.write(hello("e1.1"));
    const follower = tab(["us-1"]);
    await until(() => watchOf(server.last.url).length === 2);
    expect(watchOf(server.last.url)).toEqual(["compute:eu-1", "compute:us-1"]);
    expect(server.last.headers.get("last-event-id")).toBe("e1.1");

    follower.watch(watched({ compute: ["ap-1"] }));
    await until(() => watchOf(server.last.url).includes("compute:ap-1"));
    expect(watchOf(server.last.url)).toEqual(["compute:ap-1", "compute:eu-1"]);

    follower.close(); // its keys leave with it
    await until(() => watchOf(server.last.url).length === 1);
    expect(watchOf(server.last.url)).toEqual(["compute:eu-1"]);
    leader.close();
  });
});

describe("useAutoRefetch(query, type, { keys }) and the stream's watch=", () => {
  let server: FakeServer;
  let client: QueryClient;

  beforeEach(() => {
    vi.useFakeTimers();
    server = new FakeServer();
    client = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
  });

  afterEach(() => {
    cleanup();
    client.clear();
    vi.useRealTimers();
  });

  function Region({ id }: { id: string }) {
    const query = useAutoRefetch(useQuery({ queryKey: ["compute", id], queryFn: async () => id }), "compute", { keys: [id] });
    return <p>{query.data}</p>;
  }

  function List() {
    useAutoRefetch(useQuery({ queryKey: ["compute"], queryFn: async () => "all" }), "compute");
    return null;
  }

  let show: (regions: string[], list?: boolean) => void = () => {};

  function Page(): ReactNode {
    const [state, setState] = useState<{ regions: string[]; list: boolean }>({ regions: ["eu-1"], list: false });
    show = (regions, list = false) => setState({ regions, list });
    return (
      <>
        {state.regions.map((id) => (
          <Region key={id} id={id} />
        ))}
        {state.list ? <List /> : null}
      </>
    );
  }

  it("test_the_stream_watches_the_keys_of_mounted_keyed_queries_and_follows_navigation", async () => {
    const stream = new UpdateStream({
      url: "http://app.test/api/updates",
      types: ["compute"],
      watchTypes: ["compute"],
      fetch: server.fetch,
      logger: silentLogger(),
    });
    render(
      <QueryClientProvider client={client}>
        <UpdatesProvider stream={stream}>
          <Page />
        </UpdatesProvider>
      </QueryClientProvider>,
    );
    await act(async () => {
      await vi.advanceTimersByTimeAsync(0);
    });
    await settle();
    // The keys are known before the first connection's URL is built: no reconnect just for them.
    expect(server.connections).toHaveLength(1);
    expect(watchOf(server.last.url)).toEqual(["compute:eu-1"]);
    server.last.write(hello("e1.1"));
    await settle();

    // Navigating from one region to two others: one reconnect, from the cursor.
    act(() => show(["us-1", "ap-1"]));
    await act(async () => {
      await vi.advanceTimersByTimeAsync(100);
    });
    expect(server.connections).toHaveLength(2);
    expect(watchOf(server.last.url)).toEqual(["compute:ap-1", "compute:us-1"]);
    expect(server.last.headers.get("last-event-id")).toBe("e1.1");
    server.last.write(hello("e1.1", { id: false }));
    await settle();

    // A component showing the whole type: the stream watches the whole type (no watch= at all).
    act(() => show(["us-1"], true));
    await act(async () => {
      await vi.advanceTimersByTimeAsync(100);
    });
    expect(server.connections).toHaveLength(3);
    expect(watchOf(server.last.url)).toEqual([]);
    stream.close();
  });
});

describe("KeyInvalidator (SWR) watching keys", () => {
  it("test_mounted_keys_are_watched_and_listeners_hear_each_change_once", async () => {
    const invalidator = new KeyInvalidator(async () => {}, { logger: silentLogger() });
    const heard: string[][] = [];
    invalidator.onWatched((w) => heard.push(watchEntries(w)));
    invalidator.tag('"/api/compute/eu-1"', { type: "compute", keys: ["eu-1"] });
    invalidator.tag('"/api/compute/us-1"', { type: "compute", keys: ["us-1"] });
    invalidator.tag('"/api/compute"', "compute");
    const unmountEu = invalidator.mounted('"/api/compute/eu-1"');
    const unmountUs = invalidator.mounted('"/api/compute/us-1"');
    await Promise.resolve();
    expect(heard).toEqual([["compute:eu-1", "compute:us-1"]]); // once for both mounts
    unmountEu();
    await Promise.resolve();
    expect(heard.at(-1)).toEqual(["compute:us-1"]);
    const unmountList = invalidator.mounted('"/api/compute"'); // the whole type shown
    await Promise.resolve();
    expect(invalidator.watched().get("compute")).toBe("all");
    expect(heard.at(-1)).toEqual([]);
    unmountList();
    unmountUs();
    await Promise.resolve();
    expect(invalidator.watched().size).toBe(0);
  });
});

describe("QueryInvalidator watching keys (the path of every TanStack adapter)", () => {
  it("test_tags_copied_onto_a_query_count_while_it_has_an_observer_as_vue_tags_them", async () => {
    const { QueryObserver } = await import("@tanstack/react-query");
    const { QueryInvalidator } = await import("../src/invalidation/query-invalidator.js");
    const client = new QueryClient();
    const invalidator = new QueryInvalidator(client, { logger: silentLogger() });
    const heard: string[][] = [];
    invalidator.onWatched((w) => heard.push(watchEntries(w)));
    const observer = new QueryObserver(client, { queryKey: ["compute", "eu-1"], queryFn: async () => 1 });
    const off = observer.subscribe(() => {});
    // vue.ts tags the query itself (tagQuery), not the observer.
    invalidator.tagQuery(client.getQueryCache().find({ queryKey: ["compute", "eu-1"] })!, { type: "compute", keys: ["eu-1"] });
    await Promise.resolve();
    expect(heard).toEqual([["compute:eu-1"]]);
    off(); // the component went away: the tag stays on the query, but nobody shows it
    await Promise.resolve();
    expect(heard.at(-1)).toEqual([]);
    expect(invalidator.watched().size).toBe(0);
    client.clear();
  });
});
