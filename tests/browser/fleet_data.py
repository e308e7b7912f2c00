"""A registry bucket as the pipeline leaves it, written in memory for the fleet page's tests: two
versions and the gate's decision, monitor windows, and the bad inputs of issue 18 (a ``<script>``
feature name, a corrupt manifest, a corrupt report, a model with 2,000 features, one never
monitored)."""

from __future__ import annotations

import json
from typing import Any

from modelops.domain import report as reports
from modelops.storage.registry import Registry
from modelops.storage.reports import ReportStore
from tests.fakes import MemoryObjectStore

EVIL = "<script>alert('pwned')</script>"
"""A feature name (and alias reason) that must show as text, never run."""
MODEL = "houses"
WIDE = "wide"
WIDE_FEATURES = 2000
STAMPS = ["20261201T100000Z", "20261201T110000Z", "20261201T120000Z"]


def _manifest(rows: int, rmse: float, features: list[str]) -> dict[str, Any]:
    return {
        "metrics": {"rmse": rmse, "mae": rmse * 0.8, "n_train": rows},
        "dataset": {"key": f"datasets/{MODEL}/v{rows}.csv", "rows": rows, "sha256": "ab" * 32},
        "training": {
            "backend": "local",
            "job": f"modelops-{MODEL}-{rows}",
            "epochs_run": 12,
            "hyperparameters": {"dataset_sha256": "cd" * 32},
        },
        "parity": {"float32": {"passed": True, "max_abs_diff": 3e-5, "tolerance": 1e-4}},
        "schema": {"features": [{"name": f, "dtype": "float32"} for f in features]},
    }


def _feature(name: str, psi: float) -> dict[str, Any]:
    return {"name": name, "psi": psi, "ks": psi / 2, "wasserstein_norm": psi}


def _window(
    model: str, version: int, at: str, psis: dict[str, float], quality: dict[str, Any] | None
) -> dict[str, Any]:
    threshold = 0.25
    drifted = sorted((_feature(n, p) for n, p in psis.items() if p > threshold), key=lambda f: -f["psi"])
    entry = {
        "model": model,
        "version": version,
        "role": "production",
        "samples": 300,
        "psi_threshold": threshold,
        "verdict": "drift" if drifted else "ok",
        "drift": bool(drifted),
        "max_psi": max(psis.values()),
        "max_psi_ratio": max(psis.values()) / threshold,
        "features": [_feature(n, p) for n, p in psis.items()],
        "prediction": _feature("prediction", 0.05 + max(psis.values()) / 3),
        "drifted_features": drifted,
        "quality": quality,
    }
    return reports.model_report(
        model,
        [entry],
        {"start": at, "end": at, "seconds": 3600},
        at,
        100,
        0,
    )


def populate(store: MemoryObjectStore, *, wide: bool = True) -> Registry:
    """Write the fleet into ``store`` (the registry bucket); returns the registry on it."""
    reg = Registry.over(store, actor="tests")
    features = ["age", EVIL, "rooms"]
    reg.publish_version(MODEL, {"tflite": ("model.tflite", b"one")}, _manifest(150, 0.9, features))
    reg.promote(MODEL, 1, reason="v1 is the first version of the model: it becomes production", actor="gate")
    reg.publish_version(MODEL, {"tflite": ("model.tflite", b"two" * 100)}, _manifest(442, 0.7, features))
    reg.promote(MODEL, 2, reason=f"v2 promoted: {EVIL}", actor="gate")
    reg.record_decision(
        MODEL,
        "production",
        {
            "kind": "gate",
            "decision": "promote",
            "action": "promote",
            "applied": True,
            "candidate": 2,
            "production": 1,
            "metric": "rmse",
            "candidate_value": 0.7,
            "production_value": 0.9,
            "improvement": 0.2,
            "min_improvement": 0.0,
            "interval": {"lower": 0.05, "upper": 0.31, "resamples": 1000, "confidence": 0.95},
            "evaluation": {"rows": 78, "source": "heldout"},
            "source": "heldout",
            "reason": "v2 promoted to production: rmse 0.7 vs production v1's 0.9",
        },
    )
    # version 3's manifest is corrupt: its row shows the error, the others render
    store.put(f"models/{MODEL}/versions/3/manifest.json", b"{not json")
    rs = ReportStore(store)
    labelled = [None, {"labelled": 40, "metrics": {"rmse": 0.75}, "heldout": {"rmse": 0.7}}, None]
    for i, stamp in enumerate(STAMPS):
        at = f"2026-12-01T{10 + i}:00:00Z"
        psis = {"age": 0.02 + 0.01 * i, EVIL: [0.05, 0.12, 0.9][i], "rooms": 0.03}
        rs.write(_window(MODEL, 2, at, psis, labelled[i]), stamp)
    # a window whose report.json is corrupt: listed with its error, the charts skip it
    store.put(f"monitoring/{MODEL}/20261201T093000Z/report.json", b"[1, 2")
    # a model that was never monitored
    reg.publish_version("quiet", {"tflite": ("model.tflite", b"q")}, _manifest(100, 1.0, ["a"]))
    reg.promote("quiet", 1, reason="first", actor="gate")
    if wide:
        names = [f"f{i:04d}" for i in range(WIDE_FEATURES)]
        reg.publish_version(WIDE, {"tflite": ("model.tflite", b"w")}, _manifest(1000, 2.0, names))
        reg.promote(WIDE, 1, reason="first", actor="gate")
        for i, stamp in enumerate(STAMPS[:2]):
            psis = {n: (k % 97) / 100 + 0.01 * i for k, n in enumerate(names)}
            rs.write(_window(WIDE, 1, f"2026-12-01T{10 + i}:00:00Z", psis, None), stamp)
    return reg


def corrupt_latest(store: MemoryObjectStore, model: str) -> None:
    store.put(f"monitoring/{model}/latest.json", json.dumps([1]).encode())
