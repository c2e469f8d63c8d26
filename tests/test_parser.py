from __future__ import annotations

import pytest

from refetch._parser import ServerSentEvent, SSEParser


def parse(*chunks: bytes) -> list[ServerSentEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_every_line_ending_is_accepted(eol: bytes) -> None:
    stream = b"event: hello" + eol + b"data: x" + eol + eol
    assert parse(stream) == [ServerSentEvent("hello", "x", None)]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    events = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert events == [ServerSentEvent("message", "a\nb", None)]


def test_comments_are_ignored_and_multiline_data_joins_with_lf() -> None:
    events = parse(b": keep-alive\ndata: one\n:comment\ndata: two\n\n")
    assert [e.data for e in events] == ["one\ntwo"]


def test_field_without_colon_has_empty_value() -> None:
    events = parse(b"data\ndata\n\n")
    assert events[0].data == "\n"


def test_only_one_space_after_the_colon_is_removed() -> None:
    assert parse(b"data:  two spaces\n\n")[0].data == " two spaces"
    assert parse(b"data:none\n\n")[0].data == "none"


def test_leading_bom_is_dropped_once() -> None:
    events = parse(b"\xef\xbb\xbfdata: x\n\n")
    assert events == [ServerSentEvent("message", "x", None)]


def test_retry_counts_only_with_digits() -> None:
    parser = SSEParser()
    list(parser.feed(b"retry: 1500\n\nretry: 15x\n\nretry: -1\n\n"))
    assert parser.retry == 1500


def test_id_persists_across_events_and_nul_ids_are_ignored() -> None:
    events = parse(b"id: 1\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n")
    assert [e.id for e in events] == ["1", "1", "1", ""]


def test_event_without_data_is_not_dispatched_but_resets_the_type() -> None:
    events = parse(b"event: hello\n\ndata: x\n\n")
    assert events == [ServerSentEvent("message", "x", None)]


def test_unknown_fields_are_ignored_and_utf8_split_across_chunks() -> None:
    snowman = "☃".encode()
    events = parse(b"foo: bar\ndata: " + snowman[:1], snowman[1:] + b"\n\n")
    assert events[0].data == "☃"


def test_incomplete_event_at_end_of_stream_is_not_dispatched() -> None:
    assert parse(b"data: x\n") == []
