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

A tensor model (:func:`combine_for_tensors`, :func:`feed_problem`, :func:`tensor_inputs_for`,
:func:`output_problem`) is scored on the same CSVs only where that is exact: one input whose values per
row are the CSV's columns but the target, each row reshaped row-major in the CSV's order; anything
else is a reason, never a guess (docs/convert.md "Tensor models").
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
from modelops.domain.signature import DTYPES, Signature, classes_problem

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


# ---------------------------------------------------------------------------- tensor models
# A tensor model (``modelops.domain.signature``) is scored on the same CSVs where that is exact: one
# input whose values per row are the rows' feature columns, each row reshaped row-major in the columns'
# order (the CSV's: the features in order, then the target) and cast to the input's dtype; its first
# output is the prediction the metric reads (docs/convert.md "Tensor models").


class FeedError(ValueError):
    """The evaluation rows cannot be fed to a tensor model, or its outputs cannot be scored (the reason)."""


def row_columns(table: Table, target: str) -> tuple[str, ...] | None:
    """A table's feature columns (every column but the target, in its order); None without the target."""
    if target not in table.header:
        return None
    return tuple(c for c in table.header if c != target)


def tensor_columns(tables: Sequence[Table], target: str, size: int) -> tuple[str, ...]:
    """The feature columns a tensor model is fed from: of the tables' column lists, the one most tables
    hold among those with ``size`` columns (else among all; ties: the first), () when no table has the
    target."""
    counts: dict[tuple[str, ...], int] = {}
    for t in tables:
        cols = row_columns(t, target)
        if cols is not None:
            counts[cols] = counts.get(cols, 0) + 1
    fitting = {c: n for c, n in counts.items() if len(c) == size} or counts
    return max(fitting, key=lambda c: fitting[c]) if fitting else ()


def combine_for_tensors(tables: Sequence[Table], target: str, size: int, *, max_rows: int = MAX_ROWS) -> Rows:
    """:func:`combine` over :func:`tensor_columns`, every column read as a number; a table whose feature
    columns are others (not just in another order) is left out (``skipped``: ``"columns"``)."""
    cols = tensor_columns(tables, target, size)
    same = [t for t in tables if row_columns(t, target) == cols]
    rows = combine(same, cols, target, max_rows=max_rows)
    for t in tables:
        theirs = row_columns(t, target)
        if theirs is None:
            rows.skipped.append({"sha256": t.sha256, "missing": [target]})
        elif theirs != cols:
            rows.skipped.append({"sha256": t.sha256, "columns": len(theirs), "other_columns": True})
    return rows


def text_columns(tables: Iterable[Table], columns: Sequence[str]) -> list[str]:
    """The ``columns`` where some table holds a cell that is neither a number nor missing (categories)."""
    found: list[str] = []
    for t in tables:
        for c in columns:
            if c in found or c not in t.header:
                continue
            i = t.header.index(c)
            for r in t.rows:
                if i < len(r) and category(r[i]) is not None and not _is_number(r[i]):
                    found.append(c)
                    break
    return [c for c in columns if c in found]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _shown(columns: Sequence[str]) -> str:
    shown = columns if len(columns) <= 4 else [*columns[:3], "...", columns[-1]]
    names = ", ".join(shown)
    return f"{len(columns)} columns: {names}" if columns else "no feature columns"


def feed_problem(
    rows: Rows, sig: Signature, *, categorical: Collection[str] = (), text: Collection[str] = ()
) -> str | None:
    """Why ``rows`` cannot be fed to the model of signature ``sig`` (None: they can, exactly).

    ``categorical``: columns the spec declares categorical; ``text``: columns holding text cells
    (:func:`text_columns`). Both are refused: a tensor model takes numbers."""
    cols = rows.columns[:-1]
    where = f"the evaluation rows ({_shown(cols)})"
    inputs = ", ".join(s.describe() for s in sig.inputs)
    if len(sig.inputs) != 1:
        return (
            f"{where} cannot be fed to inputs {inputs}: the gate feeds each row to a model with one input; "
            "promote by hand"
        )
    spec = sig.inputs[0]
    if spec.size != len(cols):
        return (
            f"{where} cannot be fed to input {inputs} ({spec.size} values per row): the gate feeds one "
            "value per column; promote by hand"
        )
    cats = [c for c in cols if c in categorical or c in text]
    if cats:
        return (
            f"{where}: {', '.join(cats[:5])} hold categories (text), which input {inputs} cannot take: "
            "promote by hand"
        )
    x = rows.features
    if spec.dtype == "float32":
        if x.size and float(np.abs(x).max()) > float(np.finfo(np.float32).max):
            return f"{where}: values beyond the float32 range of input {inputs}; promote by hand"
        return None
    info = np.iinfo(np.dtype(spec.dtype))
    if x.size and not np.array_equal(x, np.round(x)):
        return (
            f"{where}: values with a fraction, which input {inputs} (integers) cannot take: promote by hand"
        )
    if x.size and (float(x.min()) < info.min or float(x.max()) > info.max):
        return f"{where}: values beyond the {spec.dtype} range of input {inputs}; promote by hand"
    return None


def tensor_inputs_for(rows: Rows, sig: Signature) -> dict[str, np.ndarray]:
    """A tensor model's inputs: each row reshaped row-major to its input's shape, in its dtype.
    :class:`FeedError` when :func:`feed_problem` names a reason."""
    problem = feed_problem(rows, sig)
    if problem is not None:
        raise FeedError(problem)
    spec = sig.inputs[0]
    x = rows.features.reshape(len(rows), *spec.shape)
    return {spec.name: np.ascontiguousarray(x, dtype=DTYPES[spec.dtype])}


def output_problem(task: str, classes: Sequence[Any] | None, sig: Signature) -> str | None:
    """Why the first output of a tensor model cannot be scored for ``task`` (None: it can): one value
    per row for regression, one or two for binary, one per class for multiclass; a classifier needs its
    classes (``schema.classes``) to read the labels."""
    out = sig.outputs[0]
    what = f"the first output {out.describe()}"
    if task == "regression":
        return (
            None
            if out.size == 1
            else f"{what} has {out.size} values per row; a regression model is scored on one"
        )
    if classes is None:
        return (
            f"a {task} model without classes (schema.classes) cannot be scored on labelled rows: import it "
            "with --classes or --eval, or train it on a dataset with the target"
        )
    problem = classes_problem(task, classes, out)
    if problem is not None:
        return problem
    want = (1, 2) if task == "binary" else (len(classes),)
    if out.size not in want:
        return f"{what} has {out.size} scores per row; the gate scores one score vector per row"
    return None
