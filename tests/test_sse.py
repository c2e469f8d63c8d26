from __future__ import annotations

import pytest

from refetch._sse import (
    PING,
    encode_frame,
    encode_hello,
    encode_invalidate,
    encode_reconnect,
    encode_resync,
)


def test_hello_frame_bytes_on_a_fresh_connection() -> None:
    frame = encode_hello("ab12.7", 15.0, ["projects", "compute"], retry=2000, resumed=False)
    assert frame == (
        b"retry: 2000\n"
        b"id: ab12.7\n"
        b"event: hello\n"
        b'data: {"cursor":"ab12.7","heartbeat":15.0,"types":["projects","compute"]}\n\n'
    )


def test_hello_frame_carries_no_id_when_the_client_resumes() -> None:
    frame = encode_hello("ab12.7", 15.0, ["projects"], retry=2000, resumed=True)
    assert b"id:" not in frame
    assert frame.startswith(b"retry: 2000\nevent: hello\n")


def test_invalidate_frame_bytes_with_keys_sorted_and_whole_types() -> None:
    frame = encode_invalidate("ab12.9", {"projects": {"42", "17"}, "progress": None})
    assert frame == (
        b"id: ab12.9\n"
        b"event: invalidate\n"
        b'data: {"updates":[{"type":"projects","keys":["17","42"]},{"type":"progress"}]}\n\n'
    )


def test_resync_and_ping_frame_bytes() -> None:
    assert encode_resync("ab12.3", "cursor too old") == (
        b'id: ab12.3\nevent: resync\ndata: {"reason":"cursor too old"}\n\n'
    )
    assert PING == b"event: ping\ndata: {}\n\n"


def test_reconnect_frame_bytes_carry_the_delay_as_retry_too_and_no_id() -> None:
    # retry: is what a native EventSource follows; no id:, so the client's cursor stays.
    assert encode_reconnect(734, "shutdown") == (
        b'retry: 734\nevent: reconnect\ndata: {"delay":734,"reason":"shutdown"}\n\n'
    )


def test_data_with_line_breaks_stays_on_one_data_line() -> None:
    frame = encode_frame("invalidate", {"updates": [{"type": "a\nb"}]})
    assert frame.count(b"\n") == 3
    assert b"a\\nb" in frame


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_ids_with_line_breaks_or_nul_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="id"):
        encode_frame("ping", {}, id=bad)
