from __future__ import annotations

import types

import refetch


def test_all_is_sorted_and_every_name_exists() -> None:
    assert refetch.__all__ == sorted(refetch.__all__)
    for name in refetch.__all__:
        assert hasattr(refetch, name), name


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(refetch).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - {"annotations"} == set(refetch.__all__)
