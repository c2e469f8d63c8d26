"""An incremental ``text/event-stream`` parser that follows the WHATWG rules.

Lines end in CR, LF or CRLF (a CR at the end of one chunk and an LF at the start
of the next are one line end); a leading BOM is dropped; lines starting with
``:`` are comments; a field without a colon has an empty value; ``data`` lines
join with LF; ``retry`` counts only when it is all ASCII digits; an ``id`` with
NUL is ignored; an event with no data is not dispatched.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None
    """The last event ID *after* this event (the stream's, not only this frame's)."""
    retry: int | None = None


class SSEParser:
    """Feed it bytes as they arrive; it yields complete events."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._skip_lf = False
        self._event = ""
        self._data: list[str] = []
        self._has_data = False
        self.last_event_id: str | None = None
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> Iterator[ServerSentEvent]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        yield from self._lines(text)

    def _lines(self, text: str) -> Iterator[ServerSentEvent]:
        if self._skip_lf and text:
            if text[0] == "\n":
                text = text[1:]
            self._skip_lf = False
        buffer = self._buffer + text
        start = 0
        length = len(buffer)
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, next_start = lf, lf + 1
            else:
                end = cr
                if cr + 1 < length:
                    next_start = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
                else:
                    # A CR at the end of the chunk: an LF may follow in the next one.
                    next_start = cr + 1
                    self._skip_lf = True
            event = self._line(buffer[start:end])
            if event is not None:
                yield event
            start = next_start
        self._buffer = buffer[start:]

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, self._event = self._event, ""
        data, self._data = self._data, []
        has_data, self._has_data = self._has_data, False
        if not has_data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self.last_event_id, self.retry)
