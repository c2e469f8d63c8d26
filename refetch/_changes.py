"""What changed, per update type: a set of keys, or ``None`` for the whole type.

This is what a frame says and what a connection still has to be told. Past ``max_keys``
keys of one type the keys are worth less than the memory and the bytes: the whole type.
"""

from __future__ import annotations

#: type -> keys that changed, ``None`` meaning the whole type.
Changes = dict[str, set[str] | None]


def add_change(changes: Changes, type_: str, key: str | None, max_keys: int) -> bool:
    """Merge one change in; True if ``changes`` covered it already."""
    if type_ not in changes:
        changes[type_] = None if key is None else {key}
        return False
    keys = changes[type_]
    if keys is None:
        return True
    if key is None:
        changes[type_] = None
        return False
    if key in keys:
        return True
    keys.add(key)
    if len(keys) > max_keys:
        changes[type_] = None
    return False


def merge_changes(changes: Changes, other: Changes, max_keys: int) -> None:
    """Merge ``other`` into ``changes`` (``other`` is left as it was)."""
    for type_, keys in other.items():
        mine = changes.get(type_, set())
        if keys is None or mine is None:
            changes[type_] = None
        elif type_ not in changes:
            changes[type_] = set(keys) if len(keys) <= max_keys else None
        else:
            mine |= keys
            if len(mine) > max_keys:
                changes[type_] = None
