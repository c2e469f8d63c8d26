"""The ping schedule against a model: every filed item comes back once, not before its tick,
and at the first ``due()`` whose time reached it (however long the loop slept in between)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from refetch._heartbeats import TICKS, Schedule

HEARTBEAT = 3.0
GRAIN = HEARTBEAT / TICKS

steps = st.lists(
    st.one_of(
        st.tuples(st.just("file"), st.floats(0, 20, allow_nan=False)),
        st.tuples(st.just("add"), st.just(0.0)),
        st.tuples(st.just("advance"), st.floats(0, 8, allow_nan=False)),
    ),
    max_size=60,
)


def tick(t: float) -> int:
    return math.ceil(t / GRAIN)


@given(steps)
def test_every_item_comes_back_once_at_its_tick(ops: list[tuple[str, float]]) -> None:
    schedule: Schedule[int] = Schedule(HEARTBEAT)
    now = 0.0
    handed_out = None  # the model: the last tick due() handed out
    window: dict[int, tuple[int, int]] = {}  # item -> (earliest, latest) tick it may come at

    def filed(earliest: float, latest: float) -> tuple[int, int]:
        # Filed at a tick already handed out: it comes at the next one.
        floor = -math.inf if handed_out is None else handed_out + 1
        return max(tick(earliest), floor), max(tick(latest), floor)  # type: ignore[return-value]

    for n, (op, value) in enumerate(ops):
        if op == "file":
            schedule.at(n, now + value)
            window[n] = filed(now + value, now + value)
        elif op == "add":
            schedule.add(n, now)
            window[n] = filed(now + HEARTBEAT / 2, now + HEARTBEAT)
        else:
            now += value
            got = schedule.due(now)
            last = math.floor(now / GRAIN)
            assert len(got) == len(set(got))
            for item in got:
                assert window.pop(item)[0] <= last  # never before its tick, and only once
            late = [item for item, (_, latest) in window.items() if latest <= last]
            assert not late, (late, now)  # nothing left behind whose tick came
            handed_out = last
    assert len(schedule) == len(window)


def test_a_new_item_is_due_within_its_first_interval() -> None:
    schedule: Schedule[int] = Schedule(HEARTBEAT)
    for n in range(200):
        schedule.add(n, 0.0)
    assert schedule.due(HEARTBEAT / 2 - GRAIN) == []
    first_half = schedule.due(HEARTBEAT * 0.75)
    second_half = schedule.due(HEARTBEAT + GRAIN)
    # Spread over the second half of the interval, and all of them by its end.
    assert first_half and second_half
    assert sorted(first_half + second_half) == list(range(200))
