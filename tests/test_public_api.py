from __future__ import annotations

import refetch


def test_all_is_sorted_and_every_name_exists() -> None:
    assert refetch.__all__ == sorted(refetch.__all__)
    for name in refetch.__all__:
        assert hasattr(refetch, name), name


def test_every_public_name_is_exported() -> None:
    public = {n for n in vars(refetch) if not n.startswith("_")}
    assert public - {"annotations", "client", "cli"} == set(refetch.__all__)
