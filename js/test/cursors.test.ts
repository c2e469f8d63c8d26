import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import { compareCursors, CURSOR_HEADER, CursorTracker, NOTIFIED_HEADER } from "../src/cursors.js";

describe("cursors", () => {
  it("test_cursors_of_one_run_order_by_their_number_and_others_do_not_order", () => {
    expect(compareCursors("5f0c.9", "5f0c.10")).toBe(-1);
    expect(compareCursors("5f0c.10", "5f0c.9")).toBe(1);
    expect(compareCursors("5f0c.7", "5f0c.7")).toBe(0);
    expect(compareCursors("a.b.12", "a.b.3")).toBe(1); // the epoch is everything before the last dot
    expect(compareCursors("5f0c.1", "9e1d.2")).toBeNull(); // another server run
    expect(compareCursors("garbage", "5f0c.1")).toBeNull();
    expect(compareCursors("5f0c.x", "5f0c.1")).toBeNull();
  });

  it("test_the_cursor_rule_is_the_servers_one_read_from_the_shared_vectors", () => {
    // The same file tests/test_cursors.py checks refetch/_cursor.py against.
    const url = new URL("../../tests/cursor_vectors.json", import.meta.url);
    const vectors: { text: string; epoch: string | null; position: string | null }[] = JSON.parse(
      readFileSync(url, "utf8"),
    ).cursors;
    for (const { text, epoch, position } of vectors) {
      if (epoch === null || position === null) {
        expect(compareCursors(text, text), JSON.stringify(text)).toBeNull();
        continue;
      }
      expect(compareCursors(text, text), text).toBe(0);
      expect(compareCursors(`${epoch}.0`, text), text).toBe(position.replace(/^0+/, "") ? -1 : 0);
      expect(compareCursors(text, `other.${position}`), text).toBeNull();
    }
    // A PostgreSQL position (up to 39 digits) orders like any other.
    expect(compareCursors(`e.${"9".repeat(38)}`, `e.1${"0".repeat(38)}`)).toBe(-1);
  });

  it("test_the_tracker_keeps_the_oldest_from_responses_headers_and_strings", async () => {
    const tracker = new CursorTracker();
    const heard: string[] = [];
    tracker.subscribe((cursor) => heard.push(cursor));
    tracker.note(new Response("[]", { headers: { [CURSOR_HEADER]: "e1.7" } }));
    tracker.note(new Headers({ "refetch-cursor": "e1.3" }));
    tracker.note("e1.5");
    tracker.note(new Response("[]")); // no header: not a refetch response, nothing to note
    tracker.note(null);
    expect(heard).toEqual(["e1.7", "e1.3", "e1.5"]);
    expect(tracker.summary).toEqual({ count: 3, oldest: "e1.3", mixed: false });
    tracker.note("e2.1"); // read across a restart: no oldest can be told
    expect(tracker.summary).toEqual({ count: 4, oldest: null, mixed: true });
  });

  it("test_wrap_notes_every_response_of_a_fetch", async () => {
    const tracker = new CursorTracker();
    const fetchImpl = async () => new Response("{}", { headers: { "Refetch-Cursor": "e1.2" } });
    const response = await tracker.wrap(fetchImpl)("http://app.test/api/projects");
    expect(await response.text()).toBe("{}");
    expect(tracker.summary.oldest).toBe("e1.2");
  });

  it("test_refetch_notified_is_heard_apart_and_is_no_read_cursor", async () => {
    const tracker = new CursorTracker();
    const read: string[] = [];
    const notified: string[] = [];
    tracker.subscribe((cursor) => read.push(cursor));
    tracker.onNotified((cursor) => notified.push(cursor));
    const answer = new Response("{}", { headers: { [CURSOR_HEADER]: "e1.3", [NOTIFIED_HEADER]: "e1.4" } });
    await tracker.wrap(async () => answer)("http://app.test/api/projects/1", { method: "PATCH" });
    tracker.note(new Headers({ "refetch-notified": "e1.6" })); // a mutation answer without a read cursor
    expect(read).toEqual(["e1.3"]);
    expect(notified).toEqual(["e1.4", "e1.6"]);
    // The page-load cursor is the oldest read, never a mutation's
    expect(tracker.summary).toEqual({ count: 1, oldest: "e1.3", mixed: false });
  });
});
