// After a deploy: a stream the server drained (a `reconnect` frame) comes back on the server's
// schedule, retries quickly while the server restarts, then falls back to the error backoff.
// Fake timers: only the schedule's logic is under test here; test/integration.test.ts restarts
// the real server.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { drainDelay, drainStepDelay } from "../src/stream/backoff.js";
import type { StreamStatus, UpdateEvent } from "../src/protocol.js";
import { UpdateStream, type UpdateStreamOptions } from "../src/stream/stream.js";
import { FakeServer, frame, hello, settle, silentLogger } from "./helpers.js";

let server: FakeServer;
let stream: UpdateStream;
let events: UpdateEvent[];
let statuses: StreamStatus[];
/** Date.now() of every connection attempt, refused or not. */
let attempts: number[];
/** While true, every attempt is refused as by a port nobody listens on. */
let down: boolean;

/** The bytes refetch sends a stream it drains (refetch/_sse.py, encode_reconnect). */
const reconnect = (delay: number) => `retry: ${delay}\n${frame("reconnect", { delay, reason: "shutdown" })}`;

const refusingFetch: typeof fetch = (input, init) => {
  attempts.push(Date.now());
  return down ? Promise.reject(new TypeError("fetch failed", { cause: new Error("connect ECONNREFUSED") })) : server.fetch(input, init);
};

function open(options: Partial<UpdateStreamOptions> = {}): UpdateStream {
  stream = new UpdateStream({
    url: "http://app.test/api/updates",
    fetch: refusingFetch,
    random: () => 0.5,
    logger: silentLogger(),
    ...options,
  });
  stream.subscribe((event) => events.push(event));
  stream.onStatus((status) => statuses.push(status));
  stream.start();
  return stream;
}

/** Open, hear hello (cursor e1.5, retry: 2000), then the server's drain notice. */
async function drained(delay: number, options: Partial<UpdateStreamOptions> = {}) {
  open(options);
  await settle();
  server.last.write(hello("e1.5", { retry: 2000 }));
  await settle();
  const first = server.last;
  const noticeAt = Date.now();
  first.write(reconnect(delay));
  await settle();
  return { first, noticeAt };
}

const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]!);

beforeEach(() => {
  vi.useFakeTimers();
  server = new FakeServer();
  events = [];
  statuses = [];
  attempts = [];
  down = false;
});

afterEach(() => {
  stream?.close();
  vi.useRealTimers();
});

describe("the drain schedule", () => {
  it("test_a_quick_step_is_a_uniform_draw_of_one_to_two_steps", () => {
    expect(drainStepDelay(250, () => 0)).toBe(250);
    expect(drainStepDelay(250, () => 0.5)).toBe(375);
    expect(drainStepDelay(250, () => 0.999)).toBe(499);
  });

  it("test_the_delay_is_the_frames_capped_at_max_and_none_when_malformed", () => {
    expect(drainDelay({ delay: 734, reason: "shutdown" }, 30_000)).toBe(734);
    expect(drainDelay({ delay: 90_000 }, 30_000)).toBe(30_000);
    expect(drainDelay({ delay: -1 }, 30_000)).toBeNull();
    expect(drainDelay({ delay: "734" }, 30_000)).toBeNull();
    expect(drainDelay(undefined, 30_000)).toBeNull();
  });
});

describe("UpdateStream after a reconnect frame", () => {
  it("test_stops_reading_and_comes_back_after_the_servers_delay_with_its_cursor", async () => {
    const { first } = await drained(700);
    // Closed by the client itself: a proxy that holds the connection open cannot delay it.
    expect(first.aborted).toBe(true);
    expect(stream.status).toBe("reconnecting");
    expect(stream.log.at(-1)).toMatchObject({ event: "reconnect" });
    await vi.advanceTimersByTimeAsync(699);
    expect(server.connections).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.connections).toHaveLength(2);
    expect(server.last.headers.get("last-event-id")).toBe("e1.5");
    // Resumed: exact replay, nothing refetched but what changed.
    server.last.write(hello("e1.5", { id: false }));
    server.last.write(frame("invalidate", { updates: [{ type: "projects", keys: ["7"] }] }, "e1.6"));
    await settle();
    expect(stream.status).toBe("open");
    expect(events).toEqual([{ kind: "invalidate", updates: [{ type: "projects", keys: ["7"] }], cursor: "e1.6" }]);
  });

  it("test_while_the_server_is_down_it_retries_every_step_for_the_window_then_backs_off", async () => {
    const { noticeAt } = await drained(700, { backoff: { drainWindowMs: 5000, drainStepMs: 250, maxMs: 30_000 } });
    down = true;
    await vi.advanceTimersByTimeAsync(20_000);
    const since = attempts.slice(1).map((t) => t - noticeAt);
    // The server's delay, then a step of 375 ms (random 0.5 of [250, 500)) after every failure
    // within the drain window (5 s) ...
    expect(since[0]).toBe(700);
    // ... then the error backoff, from its first ceiling: the frame's retry: (700), doubling.
    expect(gaps(since)).toEqual([...Array<number>(12).fill(375), 350, 700, 1400, 2800, 5600]);
    expect(statuses.filter((s) => s === "open")).toHaveLength(1);
  });

  it("test_once_back_the_stream_resumes_and_a_later_drop_uses_the_error_backoff_again", async () => {
    await drained(700, { backoff: { initialMs: 1000, maxMs: 30_000 } });
    down = true;
    await vi.advanceTimersByTimeAsync(700 + 375 * 3);
    expect(attempts).toHaveLength(1 + 4);
    down = false;
    await vi.advanceTimersByTimeAsync(375);
    expect(attempts).toHaveLength(1 + 5);
    expect(server.last.headers.get("last-event-id")).toBe("e1.5");
    // Another run of the server: it cannot resume, the client refetches everything.
    server.last.write(hello("f2.0", { retry: 2000 }));
    await settle();
    expect(stream.status).toBe("open");
    expect(events).toEqual([{ kind: "invalidate-all", reason: "not-resumed", cursor: "f2.0" }]);
    // A drop without a notice, within what was the drain window: the ordinary backoff
    // (random 0.5 of retry 2000), not a quick step.
    server.last.end();
    await settle();
    await vi.advanceTimersByTimeAsync(999);
    expect(attempts).toHaveLength(6);
    await vi.advanceTimersByTimeAsync(1);
    expect(attempts).toHaveLength(7);
  });

  it("test_a_notice_in_the_same_chunk_as_hello_is_followed", async () => {
    open();
    await settle();
    server.last.write(hello("e1.5") + reconnect(900));
    await settle();
    await vi.advanceTimersByTimeAsync(899);
    expect(attempts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(attempts).toHaveLength(2);
  });

  it("test_a_notice_without_a_usable_delay_comes_back_after_one_quick_step", async () => {
    open();
    await settle();
    server.last.write(hello("e1.5"));
    server.last.write(frame("reconnect", { reason: "shutdown" }));
    await settle();
    await vi.advanceTimersByTimeAsync(374);
    expect(attempts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(attempts).toHaveLength(2);
  });
});
