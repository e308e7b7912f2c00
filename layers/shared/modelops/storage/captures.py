"""Captured traffic and ground truth in the data bucket, as the monitor reads them.

::

    captures/{YYYY/MM/DD/HH}/...     Firehose objects of capture lines (modelops.domain.capture)
    labels/{model}/{name}.jsonl      ground-truth lines joined to captures by (request_id, row)
"""

from __future__ import annotations

from typing import Any, Protocol

from modelops.domain.capture import CaptureFormatError, decode_label
from modelops.storage import keys
from modelops.storage.s3 import ObjectStore

MAX_LABELS = 1_000_000
"""At most this many labels are joined in one run (memory stays bounded)."""

Labels = dict[str, dict[tuple[str, int], Any]]
"""``{model: {(request_id, row): label}}``."""


class Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class CaptureStore:
    """Capture objects and label files of one data bucket."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def objects_in_window(self, start: float, end: float) -> list[dict[str, Any]]:
        """Non-empty capture objects that can hold records of [start, end): in the hour prefixes from
        the window's start to its end, written (``LastModified``) at or after its start."""
        out = []
        for prefix in keys.capture_hour_prefixes(start, end):
            for obj in self.objects.iter_keys(prefix):
                if "Key" in obj and obj["LastModified"].timestamp() >= start and obj.get("Size", 1) > 0:
                    out.append(obj)
        return out

    def open(self, key: str) -> Readable | None:
        """The streaming body of a capture object (None when it was deleted since it was listed)."""
        obj = self.objects.get(key)
        return None if obj is None else obj["Body"]

    def labels(
        self, start: float, model: str | None = None, limit: int = MAX_LABELS
    ) -> tuple[Labels, dict[str, int]]:
        """Ground truth of the label files written since ``start`` (of ``model``, or of every model),
        at most ``limit`` labels: ``{model: {(request_id, row): label}}`` and each model's count of
        unreadable lines (:func:`modelops.domain.capture.decode_label`)."""
        labels: Labels = {}
        bad: dict[str, int] = {}
        total = 0
        for obj in self.objects.iter_keys(keys.labels_prefix(model)):
            name = keys.label_model(obj.get("Key", ""))
            if name is None or obj["LastModified"].timestamp() < start:
                continue
            got = self.objects.get(obj["Key"])
            if got is None:
                continue
            target = labels.setdefault(name, {})
            for line in got["Body"].iter_lines():
                if not line.strip():
                    continue
                try:
                    rid, row, lab = decode_label(line)
                except CaptureFormatError:
                    bad[name] = bad.get(name, 0) + 1
                    continue
                if total >= limit:
                    break
                target[(rid, row)] = lab
                total += 1
        return {m: v for m, v in labels.items() if v}, bad

    def label_models(self) -> list[str]:
        """The models with a ``labels/{model}/`` folder, sorted (one LIST with a delimiter)."""
        prefix = keys.labels_prefix()
        found = (
            e["Prefix"][len(prefix) :].rstrip("/")
            for e in self.objects.iter_keys(prefix, delimiter="/")
            if "Prefix" in e
        )
        return sorted(m for m in found if m)

    def late_labels(
        self, since: float, model: str | None = None, limit: int = MAX_LABELS
    ) -> tuple[Labels, dict[str, dict[str, int]]]:
        """Ground truth of the label files written since ``since`` (the label window), for matching to
        the predictions of those days: ``{model: {(request_id, row): label}}`` and per model the counts
        ``{"lines", "bad_lines", "duplicates", "over_limit"}``. A ``(request_id, row)`` given twice is
        kept once (the first read, files in key order) and counted under ``duplicates``; bad lines
        (:func:`~modelops.domain.capture.decode_label`) are counted, never fatal."""
        labels: Labels = {}
        counts: dict[str, dict[str, int]] = {}
        total = 0
        for obj in self.objects.iter_keys(keys.labels_prefix(model)):
            name = keys.label_model(obj.get("Key", ""))
            if name is None or obj["LastModified"].timestamp() < since:
                continue
            got = self.objects.get(obj["Key"])
            if got is None:
                continue
            target = labels.setdefault(name, {})
            c = counts.setdefault(name, {"lines": 0, "bad_lines": 0, "duplicates": 0, "over_limit": 0})
            for line in got["Body"].iter_lines():
                if not line.strip():
                    continue
                c["lines"] += 1
                try:
                    rid, row, lab = decode_label(line)
                except CaptureFormatError:
                    c["bad_lines"] += 1
                    continue
                if (rid, row) in target:
                    c["duplicates"] += 1
                    continue
                if total >= limit:
                    c["over_limit"] += 1
                    continue
                target[(rid, row)] = lab
                total += 1
        return {m: v for m, v in labels.items() if v}, counts
