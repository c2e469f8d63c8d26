// The WHATWG event-stream rules, as eventsource-parser 3 applies them (test/sse.test.ts checks the
// two agree on any input cut into any chunks): in-house because that package was a fifth of every
// entry's bundle, and the stream needs only its line splitting and field rules.

/** One dispatched event; `id` and `event` only when the event had those fields. */
export interface SseMessage {
  id: string | undefined;
  event: string | undefined;
  data: string;
}

export interface SseHandlers {
  onEvent(message: SseMessage): void;
  /** A `:` line: the server's keep-alive. */
  onComment(): void;
  /** A `retry:` field of digits only. */
  onRetry(ms: number): void;
}

// A CR that ends the buffer may be the first half of a CRLF: it ends a line only once more arrives.
const LINE_END = /\r\n|\r(?!$)|\n/;

/** Returns the feed: decoded text, cut anywhere. */
export function createSseParser(handlers: SseHandlers): (chunk: string) => void {
  let buffer = "";
  let first = true;
  let id: string | undefined;
  let event: string | undefined;
  // undefined until a data line: an event without one is not dispatched.
  let data: string | undefined;
  return (chunk) => {
    // A UTF-8 BOM decoded as Latin-1 (TextDecoder itself drops a real one).
    if (first && chunk.startsWith("\xEF\xBB\xBF")) chunk = chunk.slice(3);
    first = false;
    // As eventsource-parser: a chunk without a line break only adds to the line, so a CR waiting
    // at the end of the buffer ends its line only when a chunk with a line break arrives.
    if (!/[\r\n]/.test(chunk)) {
      buffer += chunk;
      return;
    }
    const lines = (buffer + chunk).split(LINE_END);
    buffer = lines.pop()!;
    for (const line of lines) {
      if (line === "") {
        if (data !== undefined) handlers.onEvent({ id, event, data });
        id = event = data = undefined;
        continue;
      }
      const colon = line.indexOf(":");
      if (colon === 0) {
        handlers.onComment();
        continue;
      }
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + (line[colon + 1] === " " ? 2 : 1));
      if (field === "data") data = data === undefined ? value : `${data}\n${value}`;
      else if (field === "event") event = value || undefined;
      else if (field === "id") id = value.includes("\0") ? id : value;
      else if (field === "retry" && /^\d+$/.test(value)) handlers.onRetry(parseInt(value, 10));
    }
  };
}
