"""The monitor's outputs: window reports and ``latest.json`` (registry bucket), retrain datasets (data bucket).

Registry bucket::

    monitoring/{model}/{stamp}/report.json|report.html   one window's report
    monitoring/{model}/latest.json                      the last window's summary (read by alert, status)

Data bucket::

    datasets/{model}/retrain-v{version}-{YYYYMMDD}.csv   labelled recent rows, written once per version
                                                         and day; the dataset trigger starts training
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelops.aws import AwsError
from modelops.domain import report as reports
from modelops.domain.errors import CorruptDocumentError
from modelops.storage import keys
from modelops.storage.s3 import ObjectStore


class ReportStore:
    """Monitor reports in the registry bucket."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def uri(self, key: str) -> str:
        return f"s3://{self.objects.bucket}/{key}"

    # ------------------------------------------------------------------ writes
    def write(self, report: dict[str, Any], stamp: str) -> dict[str, str]:
        """``report.json``, ``report.html`` and ``latest.json`` of one model's window (``report`` as
        :func:`modelops.domain.report.model_report` builds it); returns ``{"report": uri, "report_html":
        uri}``, which both documents also carry."""
        base = keys.monitoring_window(report["model"], stamp)
        uris = {"report": self.uri(base + "report.json"), "report_html": self.uri(base + "report.html")}
        full = {**report, **uris}
        self.objects.put(base + "report.json", reports.to_json(full), "application/json")
        self.objects.put(base + "report.html", reports.render_html(full).encode(), "text/html")
        self.objects.put(
            keys.monitoring_latest(report["model"]),
            reports.to_json(reports.latest_summary(full)),
            "application/json",
        )
        return uris

    # ------------------------------------------------------------------ reads
    def latest(self, model: str) -> dict[str, Any] | None:
        """``monitoring/{model}/latest.json``; None when the model has none yet. A document that is not
        a JSON object raises :class:`CorruptDocumentError` (S3 failures: see :class:`ObjectStore`)."""
        got = self.objects.get_json(keys.monitoring_latest(model))
        if got is None:
            return None
        doc = got[0]
        if not isinstance(doc, dict):
            raise CorruptDocumentError("latest.json is not an object")
        return doc

    def models(self) -> list[str]:
        """The models that have a ``monitoring/{model}/`` folder, sorted."""
        prefix = keys.monitoring_prefix()
        found = (
            e["Prefix"][len(prefix) :].rstrip("/")
            for e in self.objects.iter_keys(prefix, delimiter="/")
            if "Prefix" in e
        )
        return sorted(m for m in found if m)

    def iter_latest(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(model, latest.json)`` of every model with a readable latest report, in model order.

        A model whose ``latest.json`` is missing, not a JSON object, or refused (a non-transient AWS
        error, e.g. access denied) is skipped; a transient failure raises the store's ``unavailable``
        (what was yielded before stays valid)."""
        for model in self.models():
            try:
                doc = self.latest(model)
            except CorruptDocumentError:
                continue
            except AwsError:  # what reaches here is not transient (ObjectStore raised those)
                continue
            if doc is not None:
                yield model, doc


def _cell(value: float, vocabulary: tuple[str, ...] | None) -> str:
    if not math.isfinite(value):
        return ""
    if vocabulary is None:
        return repr(float(value))
    k = int(value)
    return vocabulary[k] if k == value and 0 <= k < len(vocabulary) else ""


class RetrainDatasets:
    """The datasets the monitor writes to retrain a drifted version (data bucket)."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def create(
        self,
        model: str,
        version: int,
        ts: float,
        columns: list[str],
        x: np.ndarray,
        labels: list[Any],
        vocabularies: list[tuple[str, ...] | None] | None = None,
    ) -> tuple[bool, str]:
        """Write ``x`` (rows of the feature ``columns[:-1]``) and ``labels`` (the last column) as
        ``datasets/{model}/retrain-v{version}-{YYYYMMDD}.csv``, create-only. Returns ``(created, uri)``:
        False when that day's dataset of the version already exists. Non-finite values are written
        empty (the dataset validation decides what they mean). ``vocabularies`` (one per feature, None
        for a numeric one) turns a categorical column's indices back into its values; the OOV index,
        and anything that is not an index, is written empty (missing): captures keep no raw value."""
        vocabs = vocabularies or [None] * (len(columns) - 1)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for row, lab in zip(x.tolist(), labels, strict=True):
            w.writerow([*(_cell(v, vocab) for v, vocab in zip(row, vocabs, strict=True)), lab])
        key = keys.retrain_dataset(model, version, datetime.fromtimestamp(ts, UTC))
        created = self.objects.create(key, buf.getvalue().encode(), "text/csv")
        return created, f"s3://{self.objects.bucket}/{key}"
