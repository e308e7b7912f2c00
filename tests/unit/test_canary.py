"""Canary decisions (domain.canary): start, promote (finish), roll back; pure functions of the alias doc."""

from __future__ import annotations

from modelops.domain import canary
from modelops.domain.alias import AliasDoc


def prod(version: int = 1, canary_version: int | None = None, previous: int | None = None) -> AliasDoc:
    return AliasDoc(
        alias="production",
        version=version,
        previous=previous,
        canary=None if canary_version is None else {"version": canary_version, "weight": 0.1},
        extra={"note": "kept"},
    )


def test_start_needs_a_production_version_and_keeps_it() -> None:
    assert canary.start(None, 2, 0.1) is None
    new = canary.start(prod(1, previous=None), 2, 0.25, reason="gate")
    assert new is not None
    assert (new.version, new.previous, new.canary, new.reason) == (
        1,
        None,
        {"version": 2, "weight": 0.25},
        "gate",
    )
    assert new.extra == {"note": "kept"}
    replaced = canary.start(prod(1, canary_version=2), 3, 0.1)
    assert replaced is not None and replaced.canary == {"version": 3, "weight": 0.1}


def test_promote_keeps_the_previous_version_and_finishes_the_canary() -> None:
    first = canary.promote(None, 1)
    assert (first.alias, first.version, first.previous, first.canary) == ("production", 1, None, None)
    finished = canary.promote(prod(1, canary_version=2, previous=None), 2, reason="by hand")
    assert (finished.version, finished.previous, finished.canary, finished.reason) == (2, 1, None, "by hand")
    again = canary.promote(prod(2, previous=1), 2, alias="staging")
    assert (again.alias, again.version, again.previous) == ("staging", 2, 1)


def test_rollback_clears_only_the_named_canary() -> None:
    assert canary.rollback(None, 2) is None
    assert canary.rollback(prod(1), 2) is None
    assert canary.rollback(prod(1, canary_version=3), 2) is None  # another canary now: left alone
    back = canary.rollback(prod(1, canary_version=2, previous=4), 2)
    assert back is not None and (back.version, back.previous, back.canary) == (1, 4, None)
