"""The rows the promotion gate scores both models on (docs/convert.md "Which rows"): pure, no I/O.

The gate stage reads the CSVs (``modelops.storage.evaluation.EvaluationStore``: the owner's pinned set,
else the evaluation rows of every dataset the model accepted) and hands their bytes here:

- :func:`parse` reads one CSV (a header row: the spec's feature columns in order, then the target);
- :func:`combine` keeps the tables that have every column both models need, projects them onto
  those columns, drops rows whose numeric features are not finite numbers or whose target is empty
  (a categorical feature's cell is always usable: an unknown or empty value is the model's
  out-of-vocabulary bucket),
  **deduplicates by row content** (the same row from two datasets counts once), and, above
  ``max_rows``, keeps a deterministic sample: the rows with the smallest SHA-256 of their content (the
  same rows whatever order the files came in; a row kept stays kept while others are added);
- :func:`inputs_for` (:func:`features_of` for names only) and :func:`targets_for` turn the rows into
  one model's input matrix (its features, in its order, each categorical cell encoded with *that
  model's* vocabulary: ``modelops.domain.encoding``) and its targets (regression: floats;
  classification: the index of the label in that model's ``classes``, -1 for a label it does not
  know: always wrong for accuracy).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelops.domain import metrics
from modelops.domain.encoding import InputSchema, category

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
    """(rows, len(columns) - 1) float64 (NaN in a column read only as categories)."""
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
    categories: dict[str, list[str | None]] = field(default_factory=dict)
    """Per column read as categories: each row's value (``encoding.category``: stripped, None when
    missing)."""

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


def _row_digest(values: tuple[float, ...], target: str, cats: tuple[str | None, ...] = ()) -> bytes:
    key = (values, target) if not cats else (values, target, cats)
    return hashlib.sha256(repr(key).encode()).digest()


def combine(
    tables: Iterable[Table],
    feature_columns: Sequence[str],
    target: str,
    *,
    max_rows: int = MAX_ROWS,
    categorical: Collection[str] = (),
    numeric: Collection[str] | None = None,
) -> Rows:
    """Every distinct usable row of ``tables`` over ``feature_columns`` + ``target``, at most ``max_rows``.

    A column in ``categorical`` is kept as text (a model with categorical features encodes it with its
    own vocabulary); the others, and those also in ``numeric`` (a column one model reads as a number and
    the other as a category), must be finite numbers for the row to be usable."""
    cols = tuple(dict.fromkeys(feature_columns))
    cat_cols = [c for c in cols if c in categorical]
    num_flags = [c not in categorical or (numeric is not None and c in numeric) for c in cols]
    seen: dict[bytes, tuple[tuple[float, ...], str, tuple[str | None, ...]]] = {}
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
        cat_pos = [t.header.index(c) for c in cat_cols]
        ti = t.header.index(target)
        width = len(t.header)
        for r in t.rows:
            if len(r) != width:
                unusable += 1
                continue
            label = r[ti].strip()
            try:
                values = tuple(
                    float(r[i]) if num else math.nan for i, num in zip(pos, num_flags, strict=True)
                )
            except ValueError:
                unusable += 1
                continue
            if not label or not all(
                math.isfinite(v) for v, num in zip(values, num_flags, strict=True) if num
            ):
                unusable += 1
                continue
            cats = tuple(category(r[i]) for i in cat_pos)
            total += 1
            seen.setdefault(_row_digest(values, label, cats), (values, label, cats))
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
        categories={c: [seen[k][2][n] for k in keep] for n, c in enumerate(cat_cols)},
    )


def features_of(rows: Rows, features: Sequence[str]) -> np.ndarray:
    """(rows, len(features)) float32: one model's inputs, in its feature order."""
    pos = [rows.columns.index(f) for f in features]
    return np.ascontiguousarray(rows.features[:, pos], dtype=np.float32)


def inputs_for(rows: Rows, schema: InputSchema) -> np.ndarray:
    """(rows, len(schema.features)) float32: one model's input matrix, in its feature order; a
    categorical feature's column holds each value's index in that model's vocabulary (OOV for a
    value it does not know, or a missing one). ``features_of`` for a model without categories."""
    if not schema.categorical:
        return features_of(rows, schema.names)
    x = np.empty((len(rows), len(schema.features)), dtype=np.float32)
    for j, feat in enumerate(schema.features):
        if feat.categorical:
            if feat.name not in rows.categories:
                raise ValueError(f"feature {feat.name!r} was not read as categories")
            table, oov = schema.lookup(feat.name), feat.oov_index
            x[:, j] = [oov if v is None else table.get(v, oov) for v in rows.categories[feat.name]]
        else:
            x[:, j] = rows.features[:, rows.columns.index(feat.name)]
    return x


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
