// Against the real Python server (test/python-server.ts), started by this file: no mocked stream.
import { QueryClient, QueryObserver } from "@tanstack/react-query";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

import { CursorTracker } from "../src/cursors.js";
import { QueryInvalidator } from "../src/invalidation/query-invalidator.js";
import { queryUpdates } from "../src/query.js";
import type { StreamStatus, UpdateEvent } from "../src/protocol.js";
import { UpdateStream, type UpdateStreamOptions } from "../src/stream/stream.js";
import { PythonServer, serverAvailable } from "./python-server.js";

const python = new PythonServer();
let base = "";
const streams: UpdateStream[] = [];
const startServer = () => python.start();
const stopServer = () => python.stop();

function open(options: Partial<UpdateStreamOptions> = {}) {
  const events: UpdateEvent[] = [];
  const statuses: StreamStatus[] = [];
  const stream = new UpdateStream({
    url: `${base}/api/updates`,
    types: ["projects"],
    backoff: { initialMs: 100, maxMs: 500 },
    logger: { warn: () => {}, error: console.error },
    ...options,
  });
  stream.subscribe((event) => events.push(event));
  stream.onStatus((status) => statuses.push(status));
  stream.start();
  streams.push(stream);
  return { stream, events, statuses };
}

async function createProject(): Promise<string> {
  const response = await fetch(`${base}/api/projects`, { method: "POST" });
  expect(response.status).toBe(201);
  return ((await response.json()) as { id: string }).id;
}

const waitFor = (check: () => void | Promise<void>) => vi.waitFor(check, { timeout: 15_000, interval: 20 });

describe.skipIf(!serverAvailable())("against the real server", () => {
  beforeAll(async () => {
    await startServer();
    base = python.base;
  }, 30_000);

  afterEach(() => {
    for (const stream of streams.splice(0)) stream.close();
  });

  afterAll(async () => {
    await stopServer();
  }, 15_000);

  it("test_a_notify_reaches_the_client_as_an_invalidate", async () => {
    const { stream, events } = open();
    await waitFor(() => expect(stream.status).toBe("open"));
    const helloFrame = stream.log[0]!;
    expect(helloFrame.event).toBe("hello");
    expect(helloFrame.id).toBe(stream.cursor);
    const id = await createProject();
    await waitFor(() =>
      expect(events).toContainEqual(expect.objectContaining({ kind: "invalidate", updates: [{ type: "projects", keys: [id] }] })),
    );
    expect(events.every((e) => e.kind === "invalidate")).toBe(true);
  });

  it("test_resume_with_the_cursor_replays_what_was_missed", async () => {
    const first = open();
    await waitFor(() => expect(first.stream.status).toBe("open"));
    const cursor = first.stream.cursor;
    first.stream.close();
    const missed = await createProject();

    const second = open({ cursor });
    await waitFor(() =>
      expect(second.events).toContainEqual(expect.objectContaining({ kind: "invalidate", updates: [{ type: "projects", keys: [missed] }] })),
    );
    expect(second.stream.log[0]!.event).toBe("hello");
    expect(second.stream.log[0]!.id).toBeUndefined();
    expect(second.events.filter((e) => e.kind === "invalidate-all")).toEqual([]);
    expect(second.stream.cursor).not.toBe(cursor);
  });

  it("test_a_stale_cursor_gets_resync_and_invalidates_everything", async () => {
    const { stream, events } = open({ cursor: "0000dead.3" });
    await waitFor(() => expect(events).toContainEqual(expect.objectContaining({ kind: "invalidate-all" })));
    expect(stream.log.map((f) => f.event)).toContain("resync");
    expect(stream.cursor).not.toBe("0000dead.3");
  });

  it("test_an_unknown_type_is_status_error_with_the_http_status_and_the_servers_code", async () => {
    const { stream, statuses } = open({ types: ["no-such-type"] });
    await waitFor(() => expect(stream.status).toBe("error"));
    expect(stream.failure).toMatchObject({ status: 400, code: "unknown_type" });
    expect(stream.failure?.detail).toContain("no-such-type");
    expect(statuses).toEqual(["error"]);
  });

  it("test_the_invalidator_keeps_a_query_fresh_from_the_real_stream", async () => {
    const client = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity, retry: false } } });
    let fetches = 0;
    const observer = new QueryObserver(client, {
      queryKey: ["progress"],
      queryFn: async () => {
        fetches++;
        return ((await (await fetch(`${base}/api/progress`)).json()) as { value: number }).value;
      },
      meta: { updates: ["progress"] },
    });
    const unsubscribe = observer.subscribe(() => {});
    const invalidator = new QueryInvalidator(client);
    invalidator.start();
    const { stream } = open({ types: ["progress"] });
    stream.subscribe((event) => invalidator.handle(event));
    try {
      await waitFor(() => expect(fetches).toBe(1));
      // The example server bumps progress every 2 s and notifies "progress".
      await waitFor(() => expect(fetches).toBeGreaterThanOrEqual(2));
      await waitFor(() => expect(observer.getCurrentResult().fetchStatus).toBe("idle"));
      const server = ((await (await fetch(`${base}/api/progress`)).json()) as { value: number }).value;
      const shown = observer.getCurrentResult().data;
      // At most one tick behind (a notify may be on its way right now), never more.
      expect([server, (server + 100) % 105]).toContain(shown);
    } finally {
      unsubscribe();
      invalidator.stop();
      client.clear();
    }
  }, 20_000);

  it("test_an_outage_is_one_console_warning_and_one_info_not_one_per_attempt", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const info = vi.spyOn(console, "info").mockImplementation(() => {});
    try {
      let attempts = 0;
      const counting: typeof fetch = (input, init) => {
        attempts++;
        return globalThis.fetch(input, init);
      };
      const { stream } = open({ logger: console, fetch: counting });
      await waitFor(() => expect(stream.status).toBe("open"));
      const before = attempts;
      await stopServer();
      // Several attempts fail while the server is down (each a warning with a stack trace before).
      await waitFor(() => expect(attempts - before).toBeGreaterThanOrEqual(5));
      await startServer();
      await waitFor(() => expect(stream.status).toBe("open"));
      const ours = (spy: typeof warn) => spy.mock.calls.filter((call) => String(call[0]).startsWith("refetch:"));
      expect(ours(warn)).toHaveLength(1);
      expect(ours(warn)[0]).toHaveLength(1); // a message, no Error object (no stack trace)
      expect(ours(info)).toHaveLength(1);
      expect(String(ours(info)[0]![0])).toMatch(/open again after \d+ failed attempts/);
    } finally {
      warn.mockRestore();
      info.mockRestore();
    }
  }, 40_000);

  it("test_reconnects_after_the_server_restarts_and_invalidates_everything", async () => {
    const { stream, events, statuses } = open();
    await waitFor(() => expect(stream.status).toBe("open"));
    const before = statuses.length;
    await stopServer();
    await waitFor(() => expect(statuses.slice(before)).toContain("reconnecting"));
    await startServer();
    await waitFor(() => expect(stream.status).toBe("open"));
    // A new server run has a new epoch: the old cursor cannot be resumed.
    await waitFor(() =>
      expect(events, JSON.stringify({ statuses, log: stream.log, output: python.output })).toContainEqual(
        expect.objectContaining({ kind: "invalidate-all" }),
      ),
    );
    const id = await createProject();
    await waitFor(() =>
      expect(events).toContainEqual(expect.objectContaining({ kind: "invalidate", updates: [{ type: "projects", keys: [id] }] })),
    );
  }, 40_000);
});

describe.skipIf(!serverAvailable())("page load against the real server, with Refetch-Cursor", () => {
  const python2 = new PythonServer();
  let client: QueryClient;
  const stops: Array<() => void> = [];

  beforeAll(() => python2.start(), 30_000);
  afterAll(() => python2.stop(), 15_000);
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
    client.clear();
  });

  /** A page: a query on /api/projects tagged `projects`, and the stream opened with the tracker. */
  async function page(beforeStream?: () => Promise<void>) {
    client = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity, retry: false } } });
    const cursors = new CursorTracker();
    const api = cursors.wrap();
    let fetches = 0;
    const observer = new QueryObserver(client, {
      queryKey: ["projects"],
      queryFn: async () => {
        fetches++;
        return ((await (await api(`${python2.base}/api/projects`)).json()) as string[]).length;
      },
      meta: { updates: ["projects"] },
    });
    stops.push(observer.subscribe(() => {}));
    await waitFor(() => expect(observer.getCurrentResult().status).toBe("success"));
    await beforeStream?.();
    const updates = queryUpdates(client);
    stops.push(
      updates.connect({ url: `${python2.base}/api/updates`, types: ["projects"], share: false, cursors, coalesceMs: 5 }),
    );
    await waitFor(() => expect(updates.status).toBe("open"));
    return { observer, updates, fetches: () => fetches };
  }

  it("test_nothing_changed_means_one_fetch_and_a_resumed_stream", async () => {
    const { updates, fetches } = await page();
    expect(updates.log[0]).toMatchObject({ event: "hello" });
    expect(updates.log[0]!.id).toBeUndefined(); // resumed from the response's cursor
    // Something after the page loaded still arrives, and costs exactly one fetch.
    const before = fetches();
    const response = await fetch(`${python2.base}/api/projects`, { method: "POST" });
    expect(response.status).toBe(201);
    await waitFor(() => expect(fetches()).toBe(before + 1));
    expect(before).toBe(1);
  });

  it("test_a_change_between_the_read_and_the_hello_is_replayed_and_shown", async () => {
    let expected = 0;
    const { observer, fetches } = await page(async () => {
      const response = await fetch(`${python2.base}/api/projects`, { method: "POST" });
      expect(response.status).toBe(201);
      expected = ((await (await fetch(`${python2.base}/api/projects`)).json()) as string[]).length;
    });
    await waitFor(() => expect(observer.getCurrentResult().data).toBe(expected));
    expect(fetches()).toBe(2);
  });
});

describe.skipIf(!serverAvailable())("watched keys against the real server (test/servers/keyed_pollers.py)", () => {
  // Three on-demand pollers of "compute", one per region (interval 0.2 s, idle_after 0.5 s), whose
  // upstream counts its requests per region; the server also lists the stream URLs it was asked for.
  const keyed = new PythonServer(".venv/bin/python js/test/servers/keyed_pollers.py");
  const stops: Array<() => void> = [];
  let client: QueryClient;

  beforeAll(() => keyed.start(), 30_000);
  afterAll(() => keyed.stop(), 15_000);
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
    client.clear();
  });

  interface Seen {
    polled: Record<string, number>;
    streams: { query: string; lastEventId: string | null }[];
  }
  const seen = async (): Promise<Seen> => (await fetch(`${keyed.base}/api/seen`)).json() as Promise<Seen>;
  const polled = async (region: string) => (await seen()).polled[region] ?? 0;
  const lastStream = async () => (await seen()).streams.at(-1)!;

  /** A component showing one region: an observer of a query tagged with that key. */
  function show(region: string, refetched: string[]): () => void {
    const observer = new QueryObserver(client, {
      queryKey: ["compute", region],
      queryFn: async () => {
        refetched.push(region);
        return region;
      },
      meta: { updates: [{ type: "compute", keys: [region] }] },
    });
    return observer.subscribe(() => {});
  }

  it("test_the_server_sees_the_watched_keys_and_polls_only_those_following_navigation", async () => {
    client = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity, retry: false } } });
    const fetched: string[] = [];
    let hideEu = show("eu-1", fetched);
    const updates = queryUpdates(client);
    stops.push(
      // No watchTypes: the server's hello says compute is polled per key.
      updates.connect({ url: `${keyed.base}/api/updates`, types: ["compute"], share: false, coalesceMs: 5 }),
    );
    stops.push(() => hideEu());
    await waitFor(() => expect(updates.status).toBe("open"));
    expect(updates.source!.log.find((entry) => entry.event === "hello")!.data).toContain('"watch":["compute"]');

    // The URL the server saw carries the key, percent-encoded, and nothing else watched.
    const first = await lastStream();
    expect(first.query).toBe("types=compute&watch=compute%3Aeu-1");
    // Polled at once (the first listener), then at its interval; the others never.
    await waitFor(async () => expect(await polled("eu-1")).toBeGreaterThanOrEqual(3));
    expect(await polled("us-1")).toBe(0);
    expect(await polled("ap-1")).toBe(0);
    // The first poll's notify reached the query of that key through the stream.
    await waitFor(() => expect(fetched.filter((region) => region === "eu-1").length).toBeGreaterThanOrEqual(2));

    // Navigating to another region: one new connection, resumed from the stream's cursor.
    const cursor = updates.source!.cursor;
    hideEu();
    hideEu = () => {};
    stops.push(show("us-1", fetched));
    await waitFor(async () => expect(await polled("us-1")).toBeGreaterThanOrEqual(1));
    const second = await lastStream();
    expect(new URLSearchParams(second.query).getAll("watch")).toEqual(["compute:us-1"]);
    expect(second.lastEventId).toBe(cursor);
    expect(updates.status).toBe("open");

    // eu-1 stops once nobody watched it for idle_after (0.5 s): its count settles, us-1's goes on.
    let settled = -1;
    await waitFor(async () => {
      const now = await polled("eu-1");
      const moved = now !== settled;
      settled = now;
      await new Promise((done) => setTimeout(done, 800)); // four intervals
      expect(moved || (await polled("eu-1")) !== settled).toBe(false);
    });
    const us = await polled("us-1");
    await waitFor(async () => expect(await polled("us-1")).toBeGreaterThan(us));
    expect(await polled("eu-1")).toBe(settled);
    expect(await polled("ap-1")).toBe(0);
    expect((await seen()).streams).toHaveLength(2);
  }, 30_000);
});
