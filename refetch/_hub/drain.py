"""When drained streams come back: a jittered, bounded schedule, one delay per stream.

A server that ends every stream at once (a deploy, a restart) would otherwise have every
client reconnect at the same instant, or, failing that, on its error backoff, which grows
while the server is down. So each stream is told when to return (``encode_reconnect``).
The delays are *stratified*: the window is cut into one slice per stream and each stream
gets a uniform draw inside its own slice, so N clients arrive at an even rate of N per
window, never bunched as independent draws can be, and all of them within the window.
The window starts at an eighth of ``spread``, not at 0: a native ``EventSource`` reuses
the delay as its retry time for every later attempt, and must not hammer a port that
refuses connections while the new process starts (250 ms at the default 2 s).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

#: The first eighth of the window is left out (see above).
FLOOR = 1 / 8


def reconnect_delays(
    count: int, spread: float, random: Callable[[], float] = _random.random
) -> list[int]:
    """Milliseconds after which each of ``count`` drained streams should reconnect."""
    low = spread * FLOOR
    width = (spread - low) / max(count, 1)
    top = round(spread * 1000)
    return [min(round((low + (i + random()) * width) * 1000), top) for i in range(count)]
