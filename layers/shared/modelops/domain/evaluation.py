"""The rows the promotion gate scores both models on (docs/convert.md "Which rows"): pure, no I/O.

The gate stage reads the CSVs (``modelops.storage.evaluation.EvaluationStore``: the owner's pinned set,
else the evaluation rows of every dataset the model accepted) and hands their bytes here:

- :func:`parse` reads one CSV (a header row: the spec's feature columns in order, then the target);
- :func:`combine` keeps the tables that have every column both models need, projects them onto
  those columns, drops rows whose features are not finite numbers or whose target is empty,
  **deduplicates by row content** (the same row from two datasets counts once), and, above
  ``max_rows``, keeps a deterministic sample: the rows with the smallest SHA-256 of their content (the
  same rows whatever order the files came in; a row kept stays kept while others are added);
- :func:`features_of` and :func:`targets_for` turn the rows into one model's input matrix (its
  features, in its order) and its targets (regression: floats; classification: the index of the
  label in that model's ``classes``, -1 for a label it does not know: always wrong for accuracy).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelops.domain import metrics

MAX_ROWS = 20_000
"""Default cap on the rows scored per decision (``GATE_MAX_EVAL_ROWS``)."""


@dataclass(frozen=True)
class Table:
    """One evaluation CSV: its SHA-256 (its key), header and data rows (cells as text)."""

    sha256: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass
class Rows:
    """The deduplicated, capped rows both models are scored on."""

    columns: tuple[str, ...]
    """Features (in the order of ``feature_columns``), then the target."""
    features: np.ndarray
    """(rows, len(columns) - 1) float64."""
    targets: list[str]
    sha256: list[str]
    """The tables the rows came from."""
    available: int
    """Distinct usable rows before the cap."""
    duplicates: int
    unusable: int
    """Rows dropped: a feature not a finite number, or an empty target."""
    skipped: list[dict[str, Any]] = field(default_factory=list)
    """Tables left out: ``{"sha256", "missing": [columns]}``."""

    def __len__(self) -> int:
        return len(self.targets)

    def describe(self) -> dict[str, Any]:
        return {
            "rows": len(self),
            "available": self.available,
            "duplicates": self.duplicates,
            "unusable": self.unusable,
            "sha256": list(self.sha256),
            "skipped": list(self.skipped),
        }


def parse(sha256: str, body: bytes) -> Table:
    """One evaluation CSV. ValueError when it has no header or is not UTF-8 CSV."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"evaluation rows {sha256[:12]}… are not UTF-8") from exc
    reader = csv.reader(io.StringIO(text))
    try:
        header = tuple(c.strip() for c in next(reader))
    except StopIteration:
        raise ValueError(f"evaluation rows {sha256[:12]}… are empty") from None
    except csv.Error as exc:
        raise ValueError(f"evaluation rows {sha256[:12]}… are not CSV: {exc}") from exc
    if not header or any(not c for c in header) or len(set(header)) != len(header):
        raise ValueError(f"evaluation rows {sha256[:12]}…: the header has empty or duplicate columns")
    try:
        rows = [tuple(r) for r in reader if r and any(c.strip() for c in r)]
    except csv.Error as exc:
        raise ValueError(f"evaluation rows {sha256[:12]}… are not CSV: {exc}") from exc
    return Table(sha256, header, rows)


def _row_digest(values: tuple[float, ...], target: str) -> bytes:
    return hashlib.sha256(repr((values, target)).encode()).digest()


def combine(
    tables: Iterable[Table], feature_columns: Sequence[str], target: str, *, max_rows: int = MAX_ROWS
) -> Rows:
    """Every distinct usable row of ``tables`` over ``feature_columns`` + ``target``, at most ``max_rows``."""
    cols = tuple(dict.fromkeys(feature_columns))
    seen: dict[bytes, tuple[tuple[float, ...], str]] = {}
    used: list[str] = []
    skipped: list[dict[str, Any]] = []
    total = unusable = 0
    for t in tables:
        missing = [c for c in (*cols, target) if c not in t.header]
        if missing:
            skipped.append({"sha256": t.sha256, "missing": missing[:20]})
            continue
        used.append(t.sha256)
        pos = [t.header.index(c) for c in cols]
        ti = t.header.index(target)
        width = len(t.header)
        for r in t.rows:
            if len(r) != width:
                unusable += 1
                continue
            label = r[ti].strip()
            try:
                values = tuple(float(r[i]) for i in pos)
            except ValueError:
                unusable += 1
                continue
            if not label or not all(math.isfinite(v) for v in values):
                unusable += 1
                continue
            total += 1
            seen.setdefault(_row_digest(values, label), (values, label))
    keep = sorted(seen)[: max(0, max_rows)]
    x = np.array([seen[k][0] for k in keep], dtype=np.float64).reshape(len(keep), len(cols))
    return Rows(
        columns=(*cols, target),
        features=x,
        targets=[seen[k][1] for k in keep],
        sha256=used,
        available=len(seen),
        duplicates=total - len(seen),
        unusable=unusable,
        skipped=skipped,
    )


def features_of(rows: Rows, features: Sequence[str]) -> np.ndarray:
    """(rows, len(features)) float32: one model's inputs, in its feature order."""
    pos = [rows.columns.index(f) for f in features]
    return np.ascontiguousarray(rows.features[:, pos], dtype=np.float32)


def targets_for(rows: Rows, task: str, classes: Sequence[Any] | None) -> np.ndarray:
    """One model's targets: floats (regression; ValueError on a non-number) or class indices in its
    ``classes`` (-1 for a label it does not know)."""
    if task == "regression":
        try:
            return np.array([float(v) for v in rows.targets], dtype=np.float64)
        except ValueError as exc:
            raise ValueError(f"a regression target is not a number: {exc}") from exc
    if not classes:
        raise ValueError("a classifier without classes in its schema cannot be scored")
    found = [metrics.match_class(v, classes) for v in rows.targets]
    return np.array([-1 if i is None else i for i in found], dtype=np.int64)
