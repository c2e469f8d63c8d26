import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { fullJitterDelay } from "../src/stream/backoff.js";
import type { StreamStatus, UpdateEvent } from "../src/protocol.js";
import { UpdateStream, type UpdateStreamOptions } from "../src/stream/stream.js";
import { FakeServer, frame, hello, settle, silentLogger } from "./helpers.js";

let server: FakeServer;
let stream: UpdateStream;
let events: UpdateEvent[];
let statuses: StreamStatus[];
let logger: { warn: ReturnType<typeof vi.fn<(...args: unknown[]) => void>>; error: ReturnType<typeof vi.fn<(...args: unknown[]) => void>> };

function open(options: Partial<UpdateStreamOptions> = {}): UpdateStream {
  stream = new UpdateStream({
    url: "http://app.test/api/updates",
    fetch: server.fetch,
    random: () => 0.5,
    logger,
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
  logger = { warn: vi.fn<(...args: unknown[]) => void>(), error: vi.fn<(...args: unknown[]) => void>() };
});

afterEach(() => {
  stream?.close();
  vi.useRealTimers();
});

describe("fullJitterDelay", () => {
  it("test_draws_uniformly_below_an_exponential_ceiling", () => {
    expect(fullJitterDelay(0, 1000, 30_000, () => 0.5)).toBe(500);
    expect(fullJitterDelay(3, 1000, 30_000, () => 0.5)).toBe(4000);
    expect(fullJitterDelay(10, 1000, 30_000, () => 0.999)).toBe(29_970);
    expect(fullJitterDelay(2, 1000, 30_000, () => 0)).toBe(0);
  });

  it("test_does_not_overflow_on_many_attempts", () => {
    expect(fullJitterDelay(5000, 1000, 30_000, () => 0.5)).toBe(15_000);
  });
});

describe("UpdateStream", () => {
  it("test_calls_the_global_fetch_unbound_as_browsers_require", async () => {
    const original = globalThis.fetch;
    const receivers: unknown[] = [];
    // Like Chromium: calling fetch with a foreign `this` is an "Illegal invocation".
    globalThis.fetch = function (this: unknown, input: RequestInfo | URL, init?: RequestInit) {
      receivers.push(this);
      if (this !== undefined && this !== globalThis) throw new TypeError("Illegal invocation");
      return server.fetch(input, init);
    } as typeof fetch;
    try {
      stream = new UpdateStream({ url: "http://app.test/api/updates", random: () => 0.5, logger });
      stream.start();
      await settle();
      expect(receivers.length).toBe(1);
      expect(server.last.url.pathname).toBe("/api/updates");
      expect(logger.warn).not.toHaveBeenCalled();
    } finally {
      globalThis.fetch = original;
    }
  });

  it("test_requests_the_stream_with_types_accept_and_credentials", async () => {
    open({ types: ["projects", "compute"], credentials: "include", headers: { Authorization: "Bearer t" } });
    await settle();
    const request = server.last;
    expect(request.url.pathname).toBe("/api/updates");
    expect(request.url.searchParams.get("types")).toBe("projects,compute");
    expect(request.headers.get("accept")).toBe("text/event-stream");
    expect(request.headers.get("authorization")).toBe("Bearer t");
    expect(request.headers.has("last-event-id")).toBe(false);
    expect(request.credentials).toBe("include");
  });

  it("test_calls_a_headers_function_on_every_connect", async () => {
    let token = 0;
    open({ headers: () => ({ Authorization: `Bearer ${++token}` }) });
    await settle();
    server.last.end();
    await settle();
    await vi.advanceTimersByTimeAsync(1000);
    expect(server.connections.map((c) => c.headers.get("authorization"))).toEqual(["Bearer 1", "Bearer 2"]);
  });

  it("test_hello_opens_and_sets_the_cursor_then_invalidate_is_delivered", async () => {
    open();
    await settle();
    expect(stream.status).toBe("connecting");
    server.last.write(hello("e1.5"));
    await settle();
    expect(stream.status).toBe("open");
    expect(stream.cursor).toBe("e1.5");
    expect(events).toEqual([]);

    server.last.write(frame("invalidate", { updates: [{ type: "projects", keys: ["42"] }, { type: "progress" }] }, "e1.6"));
    await settle();
    expect(events).toEqual([
      { kind: "invalidate", updates: [{ type: "projects", keys: ["42"] }, { type: "progress" }], cursor: "e1.6" },
    ]);
    expect(stream.cursor).toBe("e1.6");
  });

  it("test_reconnect_resends_the_last_cursor_and_a_resumed_hello_keeps_it", async () => {
    open();
    await settle();
    server.last.write(hello("e1.5"));
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.7"));
    await settle();
    server.last.end();
    await settle();
    expect(stream.status).toBe("reconnecting");

    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(2);
    expect(server.last.headers.get("last-event-id")).toBe("e1.7");
    // Resumed: hello has no id, the replay brings what was missed.
    server.last.write(hello("e1.9", { id: false }));
    await settle();
    expect(stream.cursor).toBe("e1.7");
    server.last.write(frame("invalidate", { updates: [{ type: "compute" }] }, "e1.9"));
    await settle();
    expect(stream.cursor).toBe("e1.9");
    expect(events.map((e) => e.kind)).toEqual(["invalidate", "invalidate"]);
    expect(statuses).toEqual(["open", "reconnecting", "open"]);
  });

  it("test_a_reconnect_that_could_not_resume_invalidates_everything", async () => {
    open();
    await settle();
    server.last.write(hello("e1.5"));
    await settle();
    server.last.end();
    await vi.advanceTimersByTimeAsync(500);
    // A hello with an id after a resume attempt means the server started us fresh.
    server.last.write(hello("e2.0"));
    await settle();
    expect(events).toEqual([{ kind: "invalidate-all", reason: "not-resumed", cursor: "e2.0" }]);
    expect(stream.cursor).toBe("e2.0");
  });

  it("test_the_first_fresh_hello_does_not_invalidate", async () => {
    open();
    await settle();
    server.last.write(hello("e1.0"));
    await settle();
    expect(events).toEqual([]);
  });

  it("test_a_fresh_hello_after_a_failed_first_attempt_invalidates_everything", async () => {
    server.autoRespond = false;
    open();
    await settle();
    server.last.respond(503, '{"error":"starting"}', "application/json");
    await settle();
    await vi.advanceTimersByTimeAsync(500);
    server.last.respond();
    await settle();
    server.last.write(hello("e1.0"));
    await settle();
    expect(events).toEqual([{ kind: "invalidate-all", reason: "not-resumed", cursor: "e1.0" }]);
  });

  it("test_resync_invalidates_everything_and_moves_the_cursor", async () => {
    open({ cursor: "old.1" });
    await settle();
    expect(server.last.headers.get("last-event-id")).toBe("old.1");
    server.last.write(hello("e3.4", { id: false }));
    server.last.write(frame("resync", { reason: "cursor-unknown" }, "e3.4"));
    await settle();
    expect(events).toEqual([{ kind: "invalidate-all", reason: "cursor-unknown", cursor: "e3.4" }]);
    expect(stream.cursor).toBe("e3.4");
  });

  it("test_a_malformed_invalidate_invalidates_everything_instead_of_being_dropped", async () => {
    open();
    await settle();
    server.last.write(hello("e1.1"));
    server.last.write("event: invalidate\nid: e1.2\ndata: {not json\n\n");
    server.last.write(frame("invalidate", { updates: [{ keys: ["1"] }] }, "e1.3"));
    await settle();
    expect(events).toEqual([
      { kind: "invalidate-all", reason: "malformed-frame", cursor: "e1.2" },
      { kind: "invalidate-all", reason: "malformed-frame", cursor: "e1.3" },
    ]);
  });

  it("test_401_reports_unauthorized_and_stops_retrying_until_reconnect", async () => {
    server.autoRespond = false;
    open();
    await settle();
    server.last.respond(401, '{"error":"not authenticated"}', "application/json");
    await settle();
    expect(stream.status).toBe("unauthorized");
    expect(logger.warn).toHaveBeenCalledWith(expect.stringContaining("not authenticated"));
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(server.connections).toHaveLength(1);

    stream.reconnect();
    await settle();
    expect(server.connections).toHaveLength(2);
    expect(stream.status).toBe("reconnecting");
  });

  it("test_server_errors_are_retried_with_growing_jittered_delays", async () => {
    server.autoRespond = false;
    open({ backoff: { initialMs: 1000, maxMs: 4000 } });
    const fail = async () => {
      await settle();
      server.last.respond(500, '{"error":"boom"}', "application/json");
      await settle();
    };
    await fail();
    // random() = 0.5: half of 1000, 2000, 4000, then capped at 4000.
    for (const delay of [500, 1000, 2000, 2000, 2000]) {
      const before = server.connections.length;
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(server.connections).toHaveLength(before);
      await vi.advanceTimersByTimeAsync(1);
      expect(server.connections).toHaveLength(before + 1);
      await fail();
    }
    expect(stream.status).toBe("reconnecting");
  });

  it("test_only_a_connection_that_stays_up_resets_the_backoff_and_retry_sets_the_base", async () => {
    server.autoRespond = false;
    open({ backoff: { initialMs: 1000, stableMs: 5000 } });
    await settle();
    server.last.respond(500);
    await settle();
    await vi.advanceTimersByTimeAsync(500);
    server.last.respond(500);
    await settle();
    await vi.advanceTimersByTimeAsync(1000);
    // Attempt 2 gets a hello with retry: 200, then the server hangs up at once: no reset.
    server.last.respond();
    await settle();
    server.last.write(hello("e1.1", { retry: 200 }));
    await settle();
    server.last.end();
    await settle();
    // random() = 0.5 of min(maxMs, 200 * 2^2): 400 ms, not the 100 ms of a reset backoff.
    await vi.advanceTimersByTimeAsync(399);
    expect(server.connections).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.connections).toHaveLength(4);
    // This one stays up for stableMs: the next reconnect starts from the first ceiling again.
    server.last.respond();
    await settle();
    server.last.write(hello("e1.1", { id: false, retry: 200 }));
    await settle();
    await vi.advanceTimersByTimeAsync(5000);
    server.last.write(frame("ping", {}));
    server.last.end();
    await settle();
    await vi.advanceTimersByTimeAsync(99);
    expect(server.connections).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.connections).toHaveLength(5);
  });

  it("test_server_heartbeat_and_retry_are_clamped_to_sane_ranges", async () => {
    const stream = open({ backoff: { initialMs: 1000, maxMs: 8000 } });
    await settle();
    server.last.write(hello("e1.1", { heartbeat: 0.001, retry: 1 }));
    await settle();
    expect(stream.watchdogMs).toBe(2000); // heartbeat at least 1 s
    // No reconnect storm: a 1 ms heartbeat would have timed out twenty times by now.
    await vi.advanceTimersByTimeAsync(1999);
    expect(server.connections).toHaveLength(1);
    server.last.write(hello("e1.1", { id: false, heartbeat: 3e6, retry: 3e9 }));
    await settle();
    expect(stream.watchdogMs).toBe(1_200_000); // at most 600 s, well inside setTimeout's range
    server.last.end();
    await settle();
    // retry: 3e9 ms is bounded by maxMs: random() = 0.5 of 8000.
    await vi.advanceTimersByTimeAsync(3999);
    expect(server.connections).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.connections).toHaveLength(2);
  });

  it("test_400_and_403_are_final_answers_reported_as_error_with_status_and_code", async () => {
    server.autoRespond = false;
    const stream = open({ backoff: { initialMs: 100, maxMs: 10_000 } });
    await settle();
    server.last.respond(
      403,
      JSON.stringify({ error: "forbidden_type", detail: "not allowed to watch: audit", forbidden: ["audit"] }),
      "application/json",
    );
    await settle();
    expect(stream.status).toBe("error");
    expect(stream.failure).toEqual({
      status: 403,
      code: "forbidden_type",
      detail: "forbidden_type: not allowed to watch: audit",
    });
    // Slowly: not before half of maxMs (random() = 0.5: 7500 ms), and the status stays "error".
    await vi.advanceTimersByTimeAsync(7499);
    expect(server.connections).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.connections).toHaveLength(2);
    server.last.respond(400, JSON.stringify({ error: "unknown_type", detail: "unknown update type(s): x" }), "application/json");
    await settle();
    expect(stream.failure?.code).toBe("unknown_type");
    expect(statuses).toEqual(["error"]);
    // A deploy fixed it: the next attempt opens and clears the failure.
    await vi.advanceTimersByTimeAsync(7500);
    server.last.respond();
    await settle();
    server.last.write(hello("e1.1"));
    await settle();
    expect(stream.status).toBe("open");
    expect(stream.failure).toBeNull();
  });

  it("test_a_non_event_stream_answer_is_retried", async () => {
    server.autoRespond = false;
    open();
    await settle();
    server.last.respond(200, "<html>login</html>", "text/html");
    await settle();
    expect(stream.status).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(2);
  });

  it("test_watchdog_reconnects_after_twice_the_heartbeat_without_a_frame", async () => {
    open();
    await settle();
    server.last.write(hello("e1.1", { heartbeat: 2 }));
    await settle();
    expect(stream.watchdogMs).toBe(4000);
    // Pings keep it alive well past the limit.
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(3000);
      server.last.write(frame("ping", {}));
      await settle();
    }
    expect(server.connections).toHaveLength(1);
    expect(stream.status).toBe("open");

    await vi.advanceTimersByTimeAsync(3999);
    expect(server.connections[0]!.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.connections[0]!.aborted).toBe(true);
    expect(stream.status).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(2);
    expect(server.last.headers.get("last-event-id")).toBe("e1.1");
  });

  it("test_comments_also_feed_the_watchdog", async () => {
    open();
    await settle();
    server.last.write(hello("e1.1", { heartbeat: 1 }));
    await settle();
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(1500);
      server.last.write(": keep-alive\n\n");
      await settle();
    }
    expect(server.connections).toHaveLength(1);
  });

  it("test_watchdog_also_covers_a_server_that_never_answers", async () => {
    server.autoRespond = false;
    open({ heartbeat: 5 });
    await settle();
    await vi.advanceTimersByTimeAsync(9999);
    expect(server.connections[0]!.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.connections[0]!.aborted).toBe(true);
    await vi.advanceTimersByTimeAsync(500);
    expect(server.connections).toHaveLength(2);
  });

  it("test_a_throwing_listener_is_logged_and_does_not_stop_the_others", async () => {
    open();
    const after: UpdateEvent[] = [];
    stream.subscribe(() => {
      throw new Error("listener bug");
    });
    stream.subscribe((event) => after.push(event));
    await settle();
    server.last.write(hello("e1.1"));
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.2"));
    server.last.write(frame("invalidate", { updates: [{ type: "compute" }] }, "e1.3"));
    await settle();
    expect(after).toHaveLength(2);
    expect(logger.error).toHaveBeenCalledTimes(2);
    expect(stream.status).toBe("open");
  });

  it("test_the_frame_log_keeps_only_the_most_recent_frames", async () => {
    open({ logSize: 3 });
    await settle();
    server.last.write(hello("e1.1"));
    for (let i = 2; i <= 6; i++) server.last.write(frame("invalidate", { updates: [{ type: "p" }] }, `e1.${i}`));
    server.last.write(frame("ping", {}));
    await settle();
    expect(stream.log.map((f) => [f.event, f.id])).toEqual([
      ["invalidate", "e1.5"],
      ["invalidate", "e1.6"],
      ["ping", undefined],
    ]);
  });

  it("test_close_aborts_the_connection_and_never_reconnects", async () => {
    open();
    await settle();
    server.last.write(hello("e1.1"));
    await settle();
    stream.close();
    await settle();
    expect(server.last.aborted).toBe(true);
    expect(stream.status).toBe("closed");
    await vi.advanceTimersByTimeAsync(120_000);
    expect(server.connections).toHaveLength(1);
    expect(events).toEqual([]);
  });

  it("test_close_while_waiting_to_reconnect_stops_the_loop", async () => {
    open();
    await settle();
    server.last.end();
    await settle();
    stream.close();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(server.connections).toHaveLength(1);
  });

  it("test_frames_of_a_superseded_connection_are_ignored", async () => {
    open();
    await settle();
    const first = server.last;
    first.write(hello("e1.1"));
    await settle();
    stream.reconnect();
    await settle();
    expect(first.aborted).toBe(true);
    expect(server.connections).toHaveLength(2);
    expect(server.last.headers.get("last-event-id")).toBe("e1.1");
  });

  it("test_needs_a_url", () => {
    expect(() => new UpdateStream({ url: "" , logger: silentLogger() })).toThrow(/needs a url/);
  });
});
