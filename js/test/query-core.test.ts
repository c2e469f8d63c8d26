// The framework-free core on a bare @tanstack/query-core QueryClient: no React anywhere. The
// freshness windows of issue 12 are pinned here at the level every adapter shares.
import { MutationObserver, QueryClient, QueryObserver } from "@tanstack/query-core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { CursorTracker } from "../src/cursors.js";
import { queryUpdates } from "../src/query.js";
import { FakeServer, ManualSource, frame, hello, settle, silentLogger } from "./helpers.js";

let client: QueryClient;
let server: FakeServer;
let cursors: CursorTracker;
let fetches: Record<string, number>;
// The server's cursor when a fetch starts: what a refetch notes.
let now: string;
const stops: Array<() => void> = [];

beforeEach(() => {
  vi.useFakeTimers();
  client = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
  server = new FakeServer();
  cursors = new CursorTracker();
  fetches = {};
  now = "e1.1";
});

afterEach(() => {
  for (const stop of stops.splice(0)) stop();
  client.clear();
  vi.useRealTimers();
});

/**
 * A query on a bare client, as an adapter's hook would create it; answers after `ms`, its first
 * fetch read at `cursor` (null: the server stamps none), later ones at `now`.
 */
function observe(name: string, type: string, { ms = 50, cursor = "e1.3" as string | null, meta = true } = {}) {
  const observer = new QueryObserver(client, {
    queryKey: [name],
    queryFn: () =>
      new Promise<string>((resolve) => {
        fetches[name] = (fetches[name] ?? 0) + 1;
        const n = fetches[name];
        const readAt = n === 1 || cursor === null ? cursor : now;
        setTimeout(() => {
          cursors.note(readAt);
          resolve(`${name}#${n}`);
        }, ms);
      }),
    ...(meta ? { meta: { updates: [type] } } : {}),
  });
  stops.push(observer.subscribe(() => {}));
  return observer;
}

function connect(options: { cursors?: CursorTracker | null; types?: string[] } = {}) {
  const stop = queryUpdates(client).connect({
    url: "http://app.test/api/updates",
    fetch: server.fetch,
    share: false,
    coalesceMs: 10,
    logger: silentLogger(),
    cursors: "cursors" in options ? options.cursors : cursors,
    ...(options.types ? { types: options.types } : {}),
  });
  stops.push(stop);
  return stop;
}

async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
}

describe("page load: the window between the first fetch and the first hello", () => {
  it("test_with_cursors_each_query_is_fetched_once_and_the_stream_resumes_from_the_oldest", async () => {
    observe("projects", "projects", { ms: 40, cursor: "e1.3" });
    observe("compute", "compute", { ms: 60, cursor: "e1.2" });
    connect();
    await advance(30);
    // The stream waits for the tagged queries in flight, so it knows the oldest cursor.
    expect(server.connections).toHaveLength(0);
    await advance(40);
    expect(server.connections).toHaveLength(1);
    expect(server.last.headers.get("last-event-id")).toBe("e1.2");
    server.last.write(hello("e1.3", { id: false }));
    await settle();
    await advance(500);
    expect(fetches).toEqual({ projects: 1, compute: 1 });
    expect(queryUpdates(client).status).toBe("open");
  });

  it("test_a_change_between_the_read_and_the_hello_is_replayed_and_refetches_exactly_that", async () => {
    observe("projects", "projects", { cursor: "e1.2" });
    observe("compute", "compute", { cursor: "e1.2" });
    connect();
    await advance(60);
    expect(server.last.headers.get("last-event-id")).toBe("e1.2");
    now = "e1.3";
    server.last.write(hello("e1.3", { id: false }));
    server.last.write(frame("invalidate", { updates: [{ type: "compute" }] }, "e1.3"));
    await settle();
    await advance(500);
    expect(fetches).toEqual({ projects: 1, compute: 2 });
    expect(client.getQueryData(["compute"])).toBe("compute#2");
  });

  it("test_without_cursors_the_tagged_queries_fetched_before_hello_are_fetched_once_more", async () => {
    observe("projects", "projects", { cursor: null });
    observe("untagged", "projects", { cursor: null, meta: false });
    connect({ cursors: null });
    await advance(0);
    expect(server.connections).toHaveLength(1);
    expect(server.last.headers.get("last-event-id")).toBeNull();
    await advance(60);
    server.last.write(hello("e1.5"));
    await settle();
    await advance(500);
    expect(fetches).toEqual({ projects: 2, untagged: 1 });
    // A resumed reconnect of the same stream costs nothing more.
    server.last.end();
    await settle();
    await advance(2000);
    expect(server.last.headers.get("last-event-id")).toBe("e1.5");
    server.last.write(hello("e1.5", { id: false }));
    await settle();
    await advance(500);
    expect(fetches).toEqual({ projects: 2, untagged: 1 });
  });

  it("test_with_cursors_and_nothing_changed_a_fresh_start_costs_no_fetch", async () => {
    // A query without a tag does not hold the stream back; the one with it answered before.
    observe("projects", "projects", { ms: 10, cursor: "e1.5" });
    await advance(20);
    connect();
    await advance(0);
    expect(server.last.headers.get("last-event-id")).toBe("e1.5");
    server.last.write(hello("e1.5", { id: false }));
    await settle();
    await advance(500);
    expect(fetches).toEqual({ projects: 1 });
  });

  it("test_a_response_older_than_the_streams_start_that_came_too_late_is_fetched_once_more", async () => {
    queryUpdates(client).invalidator.cursorWaitMs = 100;
    observe("fast", "projects", { ms: 10, cursor: "e1.4" });
    observe("slow", "compute", { ms: 1000, cursor: "e1.2" });
    connect();
    await advance(150);
    expect(server.last.headers.get("last-event-id")).toBe("e1.4");
    server.last.write(hello("e1.4", { id: false }));
    now = "e1.4";
    await settle();
    await advance(1000);
    // "slow" read at e1.2, before the stream's e1.4: what changed in between is unknown.
    expect(fetches).toEqual({ fast: 1, slow: 2 });
  });
});

describe("a stream recreated (enabled false -> true, another url or types)", () => {
  it("test_the_next_stream_resumes_from_the_cursor_of_the_previous_one", async () => {
    observe("projects", "projects", { ms: 10, cursor: "e1.1" });
    observe("compute", "compute", { ms: 10, cursor: "e1.1" });
    await advance(20);
    const stop = connect();
    await advance(0);
    server.last.write(hello("e1.1", { id: false }));
    now = "e1.4";
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.4"));
    await settle();
    await advance(500);
    expect(fetches).toEqual({ projects: 2, compute: 1 });
    stop();
    expect(server.last.aborted).toBe(true);

    // While off, compute changed at e1.5. The new stream (other types, too) resumes from e1.4.
    connect({ types: ["compute"] });
    await advance(0);
    expect(server.connections).toHaveLength(2);
    expect(server.last.headers.get("last-event-id")).toBe("e1.4");
    expect(server.last.url.searchParams.get("types")).toBe("compute");
    now = "e1.5";
    server.last.write(hello("e1.5", { id: false }));
    server.last.write(frame("invalidate", { updates: [{ type: "compute" }] }, "e1.5"));
    await settle();
    await advance(500);
    expect(fetches).toEqual({ projects: 2, compute: 2 });
  });

  it("test_a_recreated_stream_the_server_cannot_resume_refetches_every_tagged_query", async () => {
    observe("projects", "projects", { ms: 10, cursor: null });
    await advance(20);
    const stop = connect({ cursors: null });
    await advance(0);
    server.last.write(hello("e1.1"));
    await settle();
    await advance(500);
    expect(fetches).toEqual({ projects: 2 }); // no cursors: the fallback's one extra fetch
    stop();
    connect({ cursors: null });
    await advance(0);
    expect(server.last.headers.get("last-event-id")).toBe("e1.1");
    server.last.write(hello("e2.0")); // another server run
    await settle();
    await advance(500);
    expect(fetches).toEqual({ projects: 3 });
  });
});

describe("tags from an observer (what useAutoRefetch declares)", () => {
  it("test_they_stay_on_the_query_after_the_observer_goes_and_leave_with_the_query", async () => {
    const observer = observe("projects", "projects", { ms: 10, cursor: "e1.1", meta: false });
    const invalidator = queryUpdates(client).invalidator;
    invalidator.tagObserver(observer.refetch, "projects");
    await advance(20);
    connect();
    await advance(0);
    server.last.write(hello("e1.1", { id: false }));
    await settle();
    stops.shift()!(); // the observer unsubscribes: no component shows the query any more
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.2"));
    await settle();
    await advance(100);
    expect(fetches).toEqual({ projects: 1 });
    expect(client.getQueryState(["projects"])?.isInvalidated).toBe(true);
    const query = client.getQueryCache().find({ queryKey: ["projects"] })!;
    expect(invalidator.tagsOf(query)).toEqual([{ type: "projects" }]);
    client.removeQueries({ queryKey: ["projects"] });
    const again = client.getQueryCache().build(client, { queryKey: ["projects"] });
    expect(invalidator.tagsOf(again)).toEqual([]);
  });

  it("test_an_observer_that_moves_to_another_key_tags_that_query_too", async () => {
    const observer = observe("a", "projects", { ms: 10, meta: false });
    const invalidator = queryUpdates(client).invalidator;
    invalidator.tagObserver(observer.refetch, { type: "projects", keys: [1] });
    observer.setOptions({ queryKey: ["b"], queryFn: async () => "b" });
    await advance(20);
    const b = client.getQueryCache().find({ queryKey: ["b"] })!;
    expect(invalidator.tagsOf(b)).toEqual([{ type: "projects", keys: ["1"] }]);
  });
});

describe("a tab that follows another tab's stream", () => {
  /** A follower: the stream is the leader's, already open at the leader's cursor when joined. */
  async function follow(leaderCursor: string) {
    const source = new ManualSource();
    source.cursor = leaderCursor;
    stops.push(queryUpdates(client).connect({ stream: source, cursors, coalesceMs: 10 }));
    source.setStatus("open");
    await advance(100);
    return source;
  }

  it("test_data_read_at_the_leaders_cursor_needs_no_fetch", async () => {
    observe("projects", "projects", { ms: 10, cursor: "e1.4" });
    await advance(20);
    await follow("e1.4");
    expect(fetches).toEqual({ projects: 1 });
  });

  it("test_data_read_before_the_leaders_cursor_is_fetched_once_more", async () => {
    observe("projects", "projects", { ms: 10, cursor: "e1.2" });
    observe("untagged", "projects", { ms: 10, cursor: "e1.2", meta: false });
    await advance(20);
    now = "e1.4";
    await follow("e1.4");
    expect(fetches).toEqual({ projects: 2, untagged: 1 });
  });
});

describe("the tab that made the change (docs/js.md)", () => {
  /** Opens the stream at `cursor` with the projects read there. */
  async function open(cursor: string) {
    observe("projects", "projects", { cursor });
    connect();
    await advance(60);
    server.last.write(hello(cursor, { id: false }));
    await settle();
    await advance(100);
    expect(fetches).toEqual({ projects: 1 });
  }

  /** A mutation whose answer, after `ms`, names `notified` (Refetch-Notified); `onSuccess` refetches the projects. */
  function mutate(notified: string, { ms = 30, invalidate = true } = {}) {
    const mutation = new MutationObserver(client, {
      mutationFn: () =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            cursors.note(new Headers({ "Refetch-Cursor": "e1.3", "Refetch-Notified": notified }));
            resolve();
          }, ms),
        ),
      onSuccess: invalidate ? () => void client.invalidateQueries({ queryKey: ["projects"] }) : undefined,
    });
    void mutation.mutate().catch(() => {});
  }

  it("test_the_frame_of_its_own_change_costs_no_second_fetch_and_a_later_frame_at_that_cursor_does", async () => {
    await open("e1.3");
    now = "e1.4";
    mutate("e1.4");
    await advance(40); // answered: onSuccess refetches (fetch 2, started after the answer)
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.4"));
    await settle();
    await advance(200);
    expect(fetches).toEqual({ projects: 2 });
    // Used up by that frame: another frame at the same cursor is news (a broker that cannot
    // number its updates delivers them at its last cursor), and is fetched.
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.4"));
    await settle();
    await advance(200);
    expect(fetches).toEqual({ projects: 3 });
  });

  it("test_a_frame_long_after_the_answer_is_fetched_even_at_its_cursor", async () => {
    // A broker lost between the answer and the frame: this instance's own updates reach its
    // streams at its last cursor, unnumbered. The answer's cursor spares frames 2 s at most.
    await open("e1.3");
    mutate("e1.4");
    await advance(2100);
    expect(fetches).toEqual({ projects: 2 });
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.3"));
    await settle();
    await advance(200);
    expect(fetches).toEqual({ projects: 3 });
  });

  it("test_a_frame_past_the_answers_cursor_is_fetched", async () => {
    await open("e1.3");
    mutate("e1.4");
    await advance(40);
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.5"));
    await settle();
    await advance(200);
    expect(fetches).toEqual({ projects: 3 });
  });

  it("test_a_frame_before_the_answer_waits_for_the_mutation_and_its_onSuccess_fetch_covers_it", async () => {
    await open("e1.3");
    mutate("e1.4", { ms: 300 });
    await advance(10);
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.4"));
    await settle();
    await advance(100); // the pass is due, but a mutation is pending: no fetch yet
    expect(fetches).toEqual({ projects: 1 });
    await advance(500);
    expect(fetches).toEqual({ projects: 2 });
  });

  it("test_without_onSuccess_the_frame_fetches_once_after_the_mutation", async () => {
    await open("e1.3");
    mutate("e1.4", { ms: 300, invalidate: false });
    await advance(10);
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.4"));
    await settle();
    await advance(600);
    expect(fetches).toEqual({ projects: 2 });
  });

  it("test_a_long_mutation_holds_the_frames_at_most_mutationWaitMs", async () => {
    await open("e1.3");
    mutate("e1.9", { ms: 10_000, invalidate: false });
    await advance(10);
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.4"));
    await settle();
    await advance(900);
    expect(fetches).toEqual({ projects: 1 });
    await advance(300); // 1000 ms after the pass was due
    expect(fetches).toEqual({ projects: 2 });
  });
});
