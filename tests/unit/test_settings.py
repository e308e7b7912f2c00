"""Per-model monitoring settings: validation, merge with a version's manifest defaults (pure)."""

from __future__ import annotations

import math

import pytest

from modelops.domain import settings as st


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"psi_threshold": 0}, "psi_threshold must be above 0 and at most 10"),
        ({"psi_threshold": 11}, "psi_threshold must be above 0 and at most 10"),
        ({"psi_threshold": "0.3"}, "psi_threshold must be a number"),
        ({"psi_threshold": math.nan}, "psi_threshold must be finite"),
        ({"psi_threshold": True}, "psi_threshold must be a number"),
        ({"capture_sample_rate": -0.1}, "capture_sample_rate must be from 0 to 1"),
        ({"capture_sample_rate": 1.5}, "capture_sample_rate must be from 0 to 1"),
        ({"new_category_threshold": 0}, "new_category_threshold must be above 0 and at most 1"),
        ({"label_window_days": 0}, "label_window_days must be a whole number of days from 1 to 31"),
        ({"label_window_days": 32}, "from 1 to 31"),
        ({"label_window_days": 2.5}, "label_window_days must be a whole number"),
        ({"retrain_on_drift": "yes"}, "retrain_on_drift must be true or false"),
        ({"retrain_on_drift": 1}, "retrain_on_drift must be true or false"),
        ({"psi": 0.3}, "unknown setting 'psi'"),
    ],
)
def test_bad_values_are_refused_naming_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(st.SettingsError, match=message) as exc:
        st.check_changes(changes)
    assert exc.value.code == "invalid_settings"


def test_edges_of_the_ranges_are_accepted() -> None:
    got = st.check_changes(
        {
            "psi_threshold": 10,
            "capture_sample_rate": 0,
            "new_category_threshold": 1,
            "label_window_days": 31.0,
            "retrain_on_drift": False,
        }
    )
    assert got == {
        "psi_threshold": 10.0,
        "capture_sample_rate": 0.0,
        "new_category_threshold": 1.0,
        "label_window_days": 31,
        "retrain_on_drift": False,
    }
    assert isinstance(got["label_window_days"], int)


def test_overrides_win_field_by_field_and_say_where_each_value_came_from() -> None:
    manifest = {"psi_threshold": 0.25, "capture_sample_rate": 0.5, "retrain_on_drift": True}
    values, sources = st.effective(manifest, {"psi_threshold": 0.4})
    assert values == {
        "psi_threshold": 0.4,
        "new_category_threshold": 0.05,
        "capture_sample_rate": 0.5,
        "retrain_on_drift": True,
        "label_window_days": 7,
    }
    assert sources == {
        "psi_threshold": "settings",
        "new_category_threshold": "default",
        "capture_sample_rate": "manifest",
        "retrain_on_drift": "manifest",
        "label_window_days": "default",
    }
    # no document: the version keeps the values it was trained with
    assert st.effective(manifest, None)[0]["psi_threshold"] == 0.25


def test_apply_sets_removes_and_counts_revisions() -> None:
    first = st.apply("demo", None, {"psi_threshold": 0.3}, at="t1", actor="a", reason="r")
    assert first["revision"] == 1 and first["settings"] == {"psi_threshold": 0.3}
    second = st.apply("demo", first, {"label_window_days": 14}, at="t2", actor="b", reason="r")
    assert second["revision"] == 2
    assert second["settings"] == {"psi_threshold": 0.3, "label_window_days": 14}
    third = st.apply("demo", second, {"psi_threshold": None}, at="t3", actor="c", reason="r")
    assert third["settings"] == {"label_window_days": 14}
    assert st.diff(second["settings"], third["settings"]) == {"psi_threshold": {"from": 0.3, "to": None}}


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"model": "demo"},
        {"model": "other", "settings": {}},
        {"model": "demo", "settings": {"psi_threshold": -1}},
        {"model": "demo", "settings": {"unknown": 1}},
    ],
)
def test_a_malformed_document_is_an_error_not_a_guess(doc: object) -> None:
    with pytest.raises(st.SettingsError, match="settings document of demo"):
        st.parse_document("demo", doc)


def test_get_nowait_never_waits_for_the_read_and_uses_it_once_it_lands() -> None:
    import threading

    from modelops.storage.settings import SettingsCache

    class SlowStore:
        """A settings store whose read blocks until released (S3 being slow)."""

        def __init__(self) -> None:
            self.release = threading.Event()
            self.reads = 0

        def overrides(self, model: str) -> dict[str, float]:
            self.reads += 1
            assert self.release.wait(10)
            return {"capture_sample_rate": 0.25}

    store = SlowStore()
    now = [0.0]
    cache = SettingsCache(store, ttl=60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    # Given a read that has not landed: the caller gets nothing at once, and only one read starts
    assert cache.get_nowait("demo") == {}
    assert cache.get_nowait("demo") == {}
    store.release.set()
    cache.wait()
    assert store.reads == 1
    # Then the landed value is used, without another read, until the TTL passes
    assert cache.get_nowait("demo") == {"capture_sample_rate": 0.25}
    assert store.reads == 1
    now[0] = 61.0
    assert cache.get_nowait("demo") == {"capture_sample_rate": 0.25}  # stale but at once
    cache.wait()
    assert store.reads == 2
