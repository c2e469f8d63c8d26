// The WHATWG event-stream rules, checked through the whole receive path (bytes -> TextDecoder ->
// parser -> frames), since a bug at any of those seams loses updates just the same.
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { FrameLogEntry, UpdateEvent } from "../src/protocol.js";
import { UpdateStream } from "../src/stream/stream.js";
import { FakeServer, settle, silentLogger } from "./helpers.js";

let server: FakeServer;
let stream: UpdateStream;
let frames: FrameLogEntry[];
let events: UpdateEvent[];

beforeEach(async () => {
  server = new FakeServer();
  frames = [];
  events = [];
  stream = new UpdateStream({ url: "http://app.test/updates", fetch: server.fetch, logger: silentLogger() });
  stream.onFrame((f) => frames.push(f));
  stream.subscribe((e) => events.push(e));
  stream.start();
  await settle();
});

afterEach(() => stream.close());

async function feed(...chunks: (string | Uint8Array)[]): Promise<void> {
  for (const chunk of chunks) {
    server.last.write(chunk);
    await settle();
  }
}

const seen = () => frames.map(({ event, id, data }) => (id === undefined ? { event, data } : { event, id, data }));

describe("event-stream parsing", () => {
  it.each([
    ["LF", "\n"],
    ["CR", "\r"],
    ["CRLF", "\r\n"],
  ])("test_accepts_%s_line_endings", async (_, eol) => {
    // A CR that ends a chunk may be half of a CRLF: the parser knows the frame ended only when the
    // next line arrives (our server uses LF, so this never delays its frames).
    await feed(`event: invalidate${eol}id: c.1${eol}data: {"updates":[{"type":"projects"}]}${eol}${eol}`, `:${eol}`);
    expect(seen()).toEqual([{ event: "invalidate", id: "c.1", data: '{"updates":[{"type":"projects"}]}' }]);
    expect(events).toEqual([{ kind: "invalidate", updates: [{ type: "projects" }], cursor: "c.1" }]);
  });

  it("test_a_crlf_split_between_chunks_is_one_line_break", async () => {
    await feed("event: ping\r", "\ndata: {}\r", "\n\r", "\n");
    expect(seen()).toEqual([{ event: "ping", data: "{}" }]);
  });

  it("test_a_frame_split_anywhere_is_reassembled", async () => {
    const text = 'event: invalidate\nid: c.9\ndata: {"updates":[{"type":"compute","keys":["7"]}]}\n\n';
    const chunks = [];
    for (let i = 0; i < text.length; i += 3) chunks.push(text.slice(i, i + 3));
    await feed(...chunks);
    expect(events).toEqual([{ kind: "invalidate", updates: [{ type: "compute", keys: ["7"] }], cursor: "c.9" }]);
  });

  it("test_a_multibyte_character_split_between_chunks_survives", async () => {
    const bytes = new TextEncoder().encode('event: resync\ndata: {"reason":"größe ✓"}\n\n');
    const cut = bytes.indexOf(0xc3) + 1; // inside "ö"
    await feed(bytes.slice(0, cut), bytes.slice(cut));
    expect(events).toEqual([{ kind: "invalidate-all", reason: "größe ✓", cursor: null }]);
  });

  it("test_comments_are_not_frames", async () => {
    await feed(": hello there\n:\n\nevent: ping\n: in between\ndata: {}\n\n");
    expect(seen()).toEqual([{ event: "ping", data: "{}" }]);
  });

  it("test_multi_line_data_is_joined_with_newlines", async () => {
    await feed('event: invalidate\ndata: {"updates":\ndata: [{"type":"a"}]}\n\n');
    expect(frames[0]!.data).toBe('{"updates":\n[{"type":"a"}]}');
    expect(events).toEqual([{ kind: "invalidate", updates: [{ type: "a" }], cursor: null }]);
  });

  it("test_a_field_without_colon_has_an_empty_value", async () => {
    // "data" alone adds an empty line; "event" alone resets the type to the default.
    await feed("event: ping\nevent\ndata\ndata\n\n");
    expect(seen()).toEqual([{ event: "message", data: "\n" }]);
  });

  it("test_only_one_space_after_the_colon_is_stripped", async () => {
    await feed("event: message\ndata:  two spaces\ndata:none\n\n");
    expect(frames[0]!.data).toBe(" two spaces\nnone");
  });

  it("test_a_leading_bom_is_ignored", async () => {
    await feed(new Uint8Array([0xef, 0xbb, 0xbf]), "event: ping\ndata: {}\n\n");
    expect(seen()).toEqual([{ event: "ping", data: "{}" }]);
  });

  it("test_an_event_without_data_is_not_dispatched", async () => {
    await feed("event: invalidate\nid: c.1\n\nevent: ping\ndata: {}\n\n");
    expect(seen()).toEqual([{ event: "ping", data: "{}" }]);
  });

  it("test_unknown_fields_are_ignored", async () => {
    await feed("event: ping\nfoo: bar\ndata: {}\n\n");
    expect(seen()).toEqual([{ event: "ping", data: "{}" }]);
  });

  it("test_an_id_with_nul_is_ignored_and_an_empty_id_clears_the_cursor", async () => {
    await feed('event: invalidate\nid: c.1\ndata: {"updates":[{"type":"a"}]}\n\n');
    await feed('event: invalidate\nid: c.\u00002\ndata: {"updates":[{"type":"a"}]}\n\n');
    expect(stream.cursor).toBe("c.1");
    await feed('event: invalidate\nid\ndata: {"updates":[{"type":"a"}]}\n\n');
    expect(stream.cursor).toBeNull();
  });

  it("test_an_unterminated_frame_is_not_dispatched", async () => {
    await feed("event: ping\ndata: {}\n");
    expect(seen()).toEqual([]);
    await feed("\n");
    expect(seen()).toHaveLength(1);
  });
});

describe("retry field", () => {
  // random() defaults to Math.random, so observe the base through a zero-jitter stream instead.
  it.each([
    ["retry: 250", 250],
    ["retry: 2.5", 1000],
    ["retry: -5", 1000],
    ["retry: 12abc", 1000],
    ["retry:", 1000],
  ])("test_%s_sets_the_base_only_when_all_digits", async (line, base) => {
    const local = new FakeServer();
    let drawnCeiling = -1;
    const s = new UpdateStream({
      url: "http://app.test/updates",
      fetch: local.fetch,
      logger: silentLogger(),
      // random() = 1 - tiny: the delay is just below the ceiling, which reveals the base.
      random: () => 0.999999,
      backoff: { initialMs: 1000 },
    });
    s.start();
    await settle();
    local.last.write(`${line}\nevent: hello\nid: c.1\ndata: {"cursor":"c.1","heartbeat":15,"types":[]}\n\n`);
    await settle();
    const realSetTimeout = globalThis.setTimeout;
    const delays: number[] = [];
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      delays.push(ms ?? 0);
      return realSetTimeout(fn, 0);
    }) as typeof setTimeout;
    try {
      local.last.end();
      await settle();
    } finally {
      globalThis.setTimeout = realSetTimeout;
      s.close();
    }
    drawnCeiling = Math.ceil(delays[0]! / 0.999999);
    expect(drawnCeiling).toBe(base);
  });
});
