// Cross-tab sharing in one Node process: Node's real BroadcastChannel delivers between instances
// with the same name, and a small fake stands in for navigator.locks (Node 20 has none). The
// browser proof with real tabs is a separate issue.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { UpdateEvent } from "../src/protocol.js";
import { SharedUpdateStream, createUpdateStream } from "../src/stream/shared.js";
import { UpdateStream } from "../src/stream/stream.js";
import { FakeLocks, FakeServer, frame, hello, silentLogger } from "./helpers.js";

let server: FakeServer;
let locks: FakeLocks;
const tabs: SharedUpdateStream[] = [];
let channelName: string;

function tab(): { stream: SharedUpdateStream; events: UpdateEvent[] } {
  const stream = new SharedUpdateStream({
    url: "http://app.test/api/updates",
    fetch: server.fetch,
    locks,
    channelName,
    backoff: { initialMs: 10, maxMs: 20 },
    logger: silentLogger(),
  });
  const events: UpdateEvent[] = [];
  stream.subscribe((event) => events.push(event));
  stream.start();
  tabs.push(stream);
  return { stream, events };
}

beforeEach(() => {
  server = new FakeServer();
  locks = new FakeLocks();
  channelName = `refetch-test-${Math.random()}`;
});

afterEach(() => {
  for (const stream of tabs.splice(0)) stream.close();
});

describe("SharedUpdateStream", () => {
  it("test_one_connection_for_all_tabs_and_followers_get_every_event", async () => {
    const a = tab();
    const b = tab();
    const c = tab();
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    expect(a.stream.isLeader).toBe(true);
    expect(b.stream.isLeader).toBe(false);

    server.last.write(hello("e1.1"));
    server.last.write(frame("invalidate", { updates: [{ type: "projects", keys: ["42"] }] }, "e1.2"));
    const expected = [{ kind: "invalidate", updates: [{ type: "projects", keys: ["42"] }], cursor: "e1.2" }];
    await vi.waitFor(() => {
      expect(a.events).toEqual(expected);
      expect(b.events).toEqual(expected);
      expect(c.events).toEqual(expected);
    });
    expect(b.stream.status).toBe("open");
    expect(c.stream.cursor).toBe("e1.2");
    expect(b.stream.log.map((f) => f.event)).toEqual(["hello", "invalidate"]);
    expect(server.connections).toHaveLength(1);
  });

  it("test_a_late_tab_learns_the_status_and_log_from_the_leader", async () => {
    const a = tab();
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    server.last.write(hello("e1.1"));
    await vi.waitFor(() => expect(a.stream.status).toBe("open"));
    const late = tab();
    await vi.waitFor(() => expect(late.stream.status).toBe("open"));
    expect(late.stream.cursor).toBe("e1.1");
    expect(late.stream.log.map((f) => f.event)).toEqual(["hello"]);
  });

  it("test_when_the_leader_closes_another_tab_takes_over_and_resumes_from_the_last_cursor", async () => {
    const a = tab();
    const b = tab();
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    server.last.write(hello("e1.1"));
    server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.5"));
    await vi.waitFor(() => expect(b.stream.cursor).toBe("e1.5"));

    a.stream.close();
    await vi.waitFor(() => expect(server.connections).toHaveLength(2));
    expect(server.connections[0]!.aborted).toBe(true);
    expect(b.stream.isLeader).toBe(true);
    expect(server.last.headers.get("last-event-id")).toBe("e1.5");

    // The server resumes: replay of what happened between the two leaders.
    server.last.write(hello("e1.7", { id: false }));
    server.last.write(frame("invalidate", { updates: [{ type: "compute" }] }, "e1.7"));
    await vi.waitFor(() => expect(b.events.at(-1)).toEqual({ kind: "invalidate", updates: [{ type: "compute" }], cursor: "e1.7" }));
    expect(b.events.filter((e) => e.kind === "invalidate-all")).toEqual([]);
    expect(b.stream.status).toBe("open");
  });

  it("test_a_takeover_the_server_cannot_resume_invalidates_everything", async () => {
    const a = tab();
    const b = tab();
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    server.last.write(hello("e1.1"));
    await vi.waitFor(() => expect(b.stream.cursor).toBe("e1.1"));
    a.stream.close();
    await vi.waitFor(() => expect(server.connections).toHaveLength(2));
    server.last.write(hello("e9.0"));
    await vi.waitFor(() => expect(b.events).toEqual([{ kind: "invalidate-all", reason: "not-resumed", cursor: "e9.0" }]));
  });

  it("test_followers_show_reconnecting_while_the_leader_reconnects", async () => {
    tab();
    const b = tab();
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    server.last.write(hello("e1.1"));
    await vi.waitFor(() => expect(b.stream.status).toBe("open"));
    server.autoRespond = false;
    server.last.end();
    await vi.waitFor(() => expect(b.stream.status).toBe("reconnecting"));
  });

  it("test_reconnect_from_a_follower_reaches_the_leader", async () => {
    server.autoRespond = false;
    tab();
    const b = tab();
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    server.last.respond(401, '{"error":"unauthorized"}', "application/json");
    await vi.waitFor(() => expect(b.stream.status).toBe("unauthorized"));
    b.stream.reconnect();
    await vi.waitFor(() => expect(server.connections).toHaveLength(2));
  });

  it("test_closing_a_follower_leaves_the_leader_alone", async () => {
    const a = tab();
    const b = tab();
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    b.stream.close();
    server.last.write(hello("e1.1"));
    await vi.waitFor(() => expect(a.stream.status).toBe("open"));
    expect(b.stream.status).toBe("closed");
    expect(b.events).toEqual([]);
    expect(server.connections).toHaveLength(1);
  });
});

describe("SharedUpdateStream across deploys and credentials", () => {
  it("test_messages_of_another_version_or_garbage_are_ignored_and_crash_nothing", async () => {
    const a = tab();
    const b = tab();
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    const stranger = new BroadcastChannel(channelName);
    try {
      // An older deploy's unversioned relay, a future version, and plain garbage.
      stranger.postMessage({ t: "event", event: { kind: "invalidate-all", reason: "old" }, cursor: "x.1" });
      stranger.postMessage({ v: 99, t: "status", status: "open", cursor: "x.1" });
      stranger.postMessage({ v: 2, t: "event", event: { kind: "invalidate", updates: "nope" }, cursor: null });
      stranger.postMessage({ v: 2, t: "status", status: "closed", cursor: null });
      stranger.postMessage({ v: 2, t: "state", status: "open", cursor: null, log: [{ at: "soon" }] });
      stranger.postMessage(null);
      stranger.postMessage("reconnect");
      server.last.write(hello("e1.1"));
      server.last.write(frame("invalidate", { updates: [{ type: "projects" }] }, "e1.2"));
      await vi.waitFor(() => expect(b.events).toHaveLength(1));
      expect(b.events).toEqual([{ kind: "invalidate", updates: [{ type: "projects" }], cursor: "e1.2" }]);
      expect(a.events).toEqual(b.events);
      expect(b.stream.status).toBe("open");
      expect(b.stream.cursor).toBe("e1.2");
      expect(server.connections).toHaveLength(1);
    } finally {
      stranger.close();
    }
  });

  it("test_followers_never_report_closed_when_the_leader_tab_closes", async () => {
    const a = tab();
    const b = tab();
    const seen: string[] = [];
    b.stream.onStatus((status) => seen.push(status));
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    server.last.write(hello("e1.1"));
    await vi.waitFor(() => expect(b.stream.status).toBe("open"));
    a.stream.close();
    await vi.waitFor(() => expect(server.connections).toHaveLength(2));
    server.last.write(hello("e1.1", { id: false }));
    await vi.waitFor(() => expect(b.stream.status).toBe("open"));
    expect(seen).not.toContain("closed");
    expect(seen).toContain("reconnecting");
  });

  it("test_tabs_with_different_tokens_never_share_one_stream", async () => {
    const url = `http://app.test/api/updates?run=${Math.random()}`;
    const open = (token: string, asFunction = false) => {
      const headers = { Authorization: `Bearer ${token}` };
      const stream = new SharedUpdateStream({
        url,
        fetch: server.fetch,
        locks,
        headers: asFunction ? async () => headers : headers,
        logger: silentLogger(),
      });
      stream.start();
      tabs.push(stream);
      return stream;
    };
    open("alice");
    open("alice", true);
    await vi.waitFor(() => expect(server.connections).toHaveLength(1));
    open("bob");
    await vi.waitFor(() => expect(server.connections).toHaveLength(2));
    expect(server.connections.map((c) => c.headers.get("authorization")).sort()).toEqual(["Bearer alice", "Bearer bob"]);
  });
});

describe("createUpdateStream", () => {
  it("test_falls_back_to_one_connection_per_tab_without_web_locks", () => {
    // Node 20 has BroadcastChannel but no navigator.locks.
    const stream = createUpdateStream({ url: "http://app.test/u", fetch: server.fetch });
    expect(stream).toBeInstanceOf(UpdateStream);
  });

  it("test_shares_when_the_platform_allows_and_not_when_asked_not_to", () => {
    const shared = createUpdateStream({ url: "http://app.test/u", fetch: server.fetch, locks });
    expect(shared).toBeInstanceOf(SharedUpdateStream);
    const own = createUpdateStream({ url: "http://app.test/u", fetch: server.fetch, locks, share: false });
    expect(own).toBeInstanceOf(UpdateStream);
  });

  it("test_falls_back_without_broadcast_channel", () => {
    const saved = globalThis.BroadcastChannel;
    // @ts-expect-error simulating a platform without it
    delete globalThis.BroadcastChannel;
    try {
      expect(createUpdateStream({ url: "http://app.test/u", fetch: server.fetch, locks })).toBeInstanceOf(UpdateStream);
    } finally {
      globalThis.BroadcastChannel = saved;
    }
  });
});
