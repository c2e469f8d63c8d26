"""A model test of the demand bookkeeping: random opens, closes, rescopes and watched keys on
three instances (hubs sharing one ``MemoryBackend``: its side channel carries the presence);
after every step, what each instance's ``watch_demand()`` says equals the brute-force answer
computed from the open streams (the rule written out again here, not imported).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refetch import Principal, UpdateService
from refetch.backends import MemoryBackend

from .conftest import TYPES, Recorder

INSTANCES = 3
SUBJECTS = ["u1", "u2", "u3"]
SCOPES = ["tenant:a", "tenant:b"]
STREAM_TYPES = ["progress", "compute", "projects"]
KEYS = ["eu", "us", "1"]
#: (type, key, audience) of the pollers every instance declares.
INTERESTS: list[tuple[str, str | None, frozenset[str] | None]] = [
    ("progress", None, None),
    ("compute", "eu", None),
    ("compute", "us", frozenset({"tenant:a"})),
    ("compute", None, frozenset({"tenant:b"})),
    ("projects", "1", frozenset({"tenant:a", "tenant:b"})),
]


@dataclass
class Open:
    instance: int
    subject: str
    scopes: frozenset[str]
    types: frozenset[str]
    watch: dict[str, frozenset[str]]
    conn: Any = None


def demand(stream: Open, interest: tuple[str, str | None, frozenset[str] | None]) -> bool:
    type_, key, audience = interest
    if type_ not in stream.types:
        return False
    if audience is not None and not (audience & stream.scopes):
        return False
    return key is None or type_ not in stream.watch or key in stream.watch[type_]


subsets = st.frozensets
opens = st.tuples(
    st.just("open"),
    st.integers(0, INSTANCES - 1),
    st.sampled_from(SUBJECTS),
    subsets(st.sampled_from(SCOPES)),
    subsets(st.sampled_from(STREAM_TYPES), min_size=1),
    st.dictionaries(st.sampled_from(STREAM_TYPES), subsets(st.sampled_from(KEYS), min_size=1)),
)
closes = st.tuples(st.just("close"), st.integers(0, 20))
rescopes = st.tuples(
    st.just("rescope"), st.integers(0, INSTANCES - 1), st.sampled_from(SUBJECTS),
    subsets(st.sampled_from(SCOPES)),
)  # fmt: skip
steps = st.lists(st.one_of(opens, opens, closes, rescopes), min_size=1, max_size=12)


async def settled(hubs: list[UpdateService], watches: list[list[Any]], model: list[Open]) -> None:
    def mismatches() -> list[str]:
        found = []
        for i, per_hub in enumerate(watches):
            for interest, watch in zip(INTERESTS, per_hub, strict=True):
                here = sum(1 for s in model if s.instance == i and demand(s, interest))
                anywhere = any(demand(s, interest) for s in model)
                elsewhere = len(
                    {s.instance for s in model if s.instance != i and demand(s, interest)}
                )
                seen = (watch.wanted, watch.listeners, watch.instances)
                if seen != (anywhere, here, elsewhere):
                    found.append(
                        f"instance {i} {interest}: {seen} != {(anywhere, here, elsewhere)}"
                    )
        return found

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):
            while mismatches():
                await asyncio.sleep(0.005)
    assert not mismatches(), mismatches()


async def run(ops: list[tuple[Any, ...]]) -> None:
    broker = MemoryBackend()
    async with contextlib.AsyncExitStack() as stack:
        hubs = []
        for _ in range(INSTANCES):
            hub = UpdateService(TYPES, backend=broker, close_on_signals=False, gc_freeze=False)
            hub._presence.settle = hub._presence.min_gap = 0.0  # test speed: no coalescing
            hubs.append(await stack.enter_async_context(hub))
        watches = [[hub.watch_demand(t, k, audience=a) for t, k, a in INTERESTS] for hub in hubs]
        model: list[Open] = []
        await settled(hubs, watches, model)
        for op in ops:
            if op[0] == "open":
                _, i, subject, scopes, types, watch = op
                stream = Open(
                    i, subject, scopes, types, {t: k for t, k in watch.items() if t in types}
                )
                principal = Principal.of(subject, scopes)
                stream.conn = hubs[i].attach(Recorder(), principal, types, None, None, stream.watch)
                model.append(stream)
            elif op[0] == "close" and model:
                stream = model.pop(op[1] % len(model))
                hubs[stream.instance].detach(stream.conn)
            elif op[0] == "rescope":
                _, i, subject, scopes = op
                hubs[i].reauthorize(subject, Principal.of(subject, scopes))
                await hubs[i].flush()
                for stream in model:
                    if stream.subject == subject:
                        stream.scopes = scopes
            await settled(hubs, watches, model)
        for stream in model:
            hubs[stream.instance].detach(stream.conn)
        await settled(hubs, watches, [])


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps)
def test_the_demand_each_instance_sees_is_the_union_of_the_open_streams(
    ops: list[tuple[Any, ...]],
) -> None:
    asyncio.run(run(ops))
