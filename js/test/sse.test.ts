// The in-house event-stream parser against eventsource-parser 3, whose rules it replaces (kept as a
// devDependency for this check only): the same events, comments and retries for any text made of
// the pieces that matter (field names, colons, spaces, CR, LF, NUL, a Latin-1 BOM), cut anywhere.
import { createParser } from "eventsource-parser";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import { createSseParser } from "../src/stream/sse.js";

type Seen = (string | number | { id: string | undefined; event: string | undefined; data: string })[];

function ours(chunks: string[]): Seen {
  const seen: Seen = [];
  const feed = createSseParser({
    onEvent: ({ id, event, data }) => seen.push({ id, event, data }),
    onComment: () => seen.push("comment"),
    onRetry: (ms) => seen.push(ms),
  });
  for (const chunk of chunks) feed(chunk);
  return seen;
}

function reference(chunks: string[]): Seen {
  const seen: Seen = [];
  const parser = createParser({
    onEvent: ({ id, event, data }) => seen.push({ id, event, data }),
    onComment: () => seen.push("comment"),
    onRetry: (ms) => seen.push(ms),
  });
  for (const chunk of chunks) parser.feed(chunk);
  return seen;
}

const piece = fc.constantFrom(
  "data", "event", "id", "retry", "foo", "Data", ":", " ", "  ", "\r", "\n", "\r\n", "\0", "12", "x", "é", "{}",
  "\xEF\xBB\xBF",
);
const text = fc.array(piece, { maxLength: 60 }).map((pieces) => pieces.join(""));

/** The text cut at these positions (sorted, deduplicated, empty chunks included). */
function cut(value: string, at: number[]): string[] {
  const points = [...new Set(at.map((n) => n % (value.length + 1)))].sort((a, b) => a - b);
  const chunks: string[] = [];
  let start = 0;
  for (const point of points) {
    chunks.push(value.slice(start, point));
    start = point;
  }
  chunks.push(value.slice(start));
  return chunks;
}

describe("event-stream parser (against eventsource-parser)", () => {
  it("test_any_text_cut_anywhere_gives_the_same_events_comments_and_retries", () => {
    fc.assert(
      fc.property(text, fc.array(fc.nat(), { maxLength: 8 }), (value, at) => {
        const chunks = cut(value, at);
        expect(ours(chunks)).toEqual(reference(chunks));
      }),
      { numRuns: 2000 },
    );
  });

  it("test_a_typical_stream_gives_its_frames", () => {
    const chunks = [": hi\n\nevent: hello\nid: c.1\nretry: 250\ndata: {}\n\nevent: invalidate\r\ndata: a\r", "\ndata: b\r\n\r\n"];
    expect(ours(chunks)).toEqual([
      "comment",
      250,
      { id: "c.1", event: "hello", data: "{}" },
      { id: undefined, event: "invalidate", data: "a\nb" },
    ]);
    expect(ours(chunks)).toEqual(reference(chunks));
  });
});
