"""Streaming validation (and loading) of a training CSV against its model spec.

The dataset is read as a stream of byte chunks (``StreamingBody.iter_chunks`` for S3, ``read(1 MiB)``
for a file) and split into lines here, with a bound on the line length, so memory stays flat whatever
the object holds: never the whole object, never one unbounded line. The SHA-256 is computed over the
exact bytes while streaming. What is checked (docs/training.md lists the codes):

- UTF-8 (a leading BOM is dropped), CRLF or LF line ends, RFC 4180 quoting (``csv`` module);
- a header with unique, non-empty names that holds the target and every listed feature;
- every row has as many fields as the header;
- features numeric and finite; an empty cell (or ``NA``, ``N/A``, ``null``) is *missing*, the text
  ``nan``/``inf`` is *non-finite* and rejected; a missing target is rejected;
- at least enough rows for the validation split, at most ``Limits.max_rows`` rows and
  ``Limits.max_bytes`` bytes (reading stops at the limit);
- per-feature missing rate and the duplicate-row rate within limits (both reported);
- classification: the target's distinct values are the classes (2 for ``binary``).

When the spec names no features, every column but the target whose non-missing values are all
numbers is a feature (columns with text are reported as excluded).

Nothing here imports TensorFlow: the Lambda validates with it, and the trainer loads with it
(``load_csv``), so whatever validated is exactly what trains. Kept Python 3.10 compatible
(the AWS TensorFlow training image runs 3.10).
"""

from __future__ import annotations

import csv
import hashlib
import math
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from modelops.domain.spec import ModelSpec

MISSING_TOKENS = frozenset({"", "na", "n/a", "null"})
"""Cell texts (stripped, case-insensitive) that mean "missing"."""

CHUNK = 1024 * 1024
_EXAMPLES = 5
_FULL = 1 << 64


@dataclass(frozen=True)
class Limits:
    """What a dataset may be. The Lambda reads these from its environment (template.yaml)."""

    max_bytes: int = 100 * 1024 * 1024
    max_rows: int = 5_000_000
    min_rows: int = 10
    max_missing_rate: float = 0.05
    """Largest share of missing cells in any one feature column."""
    max_duplicate_rate: float = 0.5
    max_line_bytes: int = 1024 * 1024
    max_columns: int = 10_000
    max_classes: int = 1000
    duplicate_sample: int = 1 << 15
    """Distinct row hashes kept for the duplicate count; beyond it the count is an estimate."""


@dataclass(frozen=True)
class Problem:
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass
class DatasetReport:
    """What the validator found. ``ok`` is true exactly when ``problems`` is empty."""

    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    bytes_read: int = 0
    sha256: str | None = None
    """SHA-256 of the whole object; None when reading stopped early (a limit, a fatal problem)."""
    complete: bool = False
    columns: list[str] = field(default_factory=list)
    target: str = ""
    features: list[str] = field(default_factory=list)
    excluded_columns: list[str] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)
    max_missing_rate: float = 0.0
    duplicate_rows: int = 0
    duplicate_rate: float = 0.0
    duplicates_exact: bool = True
    classes: list[Any] | None = None
    class_counts: list[int] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def code(self) -> str | None:
        return self.problems[0].code if self.problems else None

    @property
    def reason(self) -> str:
        return "; ".join(p.message for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "code": self.code,
            "reason": self.reason,
            "problems": [p.to_dict() for p in self.problems],
            "rows": self.rows,
            "bytes_read": self.bytes_read,
            "sha256": self.sha256,
            "complete": self.complete,
            "columns": self.columns[:200],
            "target": self.target,
            "features": self.features,
            "excluded_columns": self.excluded_columns,
            "missing": self.missing,
            "max_missing_rate": round(self.max_missing_rate, 6),
            "duplicate_rows": self.duplicate_rows,
            "duplicate_rate": round(self.duplicate_rate, 6),
            "duplicates_exact": self.duplicates_exact,
            "classes": self.classes,
            "class_counts": self.class_counts,
        }


@dataclass
class LoadedDataset:
    """A validated dataset in memory (the trainer's input). ``x`` holds NaN where a cell was missing."""

    report: DatasetReport
    features: list[str]
    x: Any  # numpy float64 (rows, features)
    y: Any  # numpy: float64 targets (regression) or int64 class indices (classification)
    classes: list[Any] | None


def split_sizes(n_rows: int, validation_split: float) -> tuple[int, int]:
    """(n_train, n_val) for ``n_rows`` rows: the held-out share rounded, at least one row each."""
    n_val = min(max(1, round(n_rows * validation_split)), n_rows - 1)
    return n_rows - n_val, n_val


def min_rows(spec: ModelSpec, limits: Limits) -> int:
    """Fewest rows that still give the training and the held-out split two rows each."""
    split = spec.training.validation_split
    return max(limits.min_rows, 4, math.ceil(2 / split), math.ceil(2 / (1 - split)))


class _Stop(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.problem = Problem(code, message)


def _label_key(text: str) -> float | str:
    try:
        v = float(text)
    except ValueError:
        return text
    return v if math.isfinite(v) else text


def _label_value(key: float | str) -> Any:
    if isinstance(key, float) and key.is_integer():
        return int(key)
    return key


class _Scanner:
    def __init__(
        self,
        spec: ModelSpec,
        limits: Limits,
        *,
        collect: bool,
        evaluation: bool = False,
        classes: list[Any] | None = None,
    ):
        self.spec = spec
        self.limits = limits
        self.collect = collect
        self.evaluation = evaluation
        """A pinned evaluation set: exactly the features and the target, labels within ``classes``, no
        minimum row count, a constant target or one class allowed."""
        self.allowed_classes = classes
        self.y_min = math.inf
        self.y_max = -math.inf
        self.report = DatasetReport(target=spec.target)
        self.hash = hashlib.sha256()
        self.classification = spec.task != "regression"
        self.header: list[str] | None = None
        self.target_idx = -1
        self.cols: list[int] = []  # candidate feature column indexes
        self.missing: dict[int, int] = {}
        self.non_numeric: dict[int, int] = {}
        self.non_finite: dict[int, int] = {}
        self.examples: dict[str, list[str]] = {}
        self.ragged = 0
        self.target_missing = 0
        self.target_bad = 0
        self.labels: dict[float | str, list[Any]] = {}  # key -> [first raw text, count]
        self.too_many_classes = False
        self.dups: set[int] = set()
        self.dup_threshold = _FULL
        self.values: dict[int, array[float]] = {}
        self.y_num: array[float] = array("d")
        self.y_keys: list[float | str] = []
        self.key_order: list[float | str] = []

    # ------------------------------------------------------------------ bytes -> lines
    def _lines(self, chunks: Iterable[bytes]) -> Iterator[str]:
        pending = b""
        lineno = 0
        limits = self.limits
        for chunk in chunks:
            if not chunk:
                continue
            self.report.bytes_read += len(chunk)
            self.hash.update(chunk)
            if self.report.bytes_read > limits.max_bytes:
                raise _Stop("too_large", f"the file is larger than the limit of {limits.max_bytes} bytes")
            pieces = chunk.split(b"\n")
            if pending:
                pieces[0] = pending + pieces[0]
            pending = pieces.pop()
            if len(pending) > limits.max_line_bytes:
                raise _Stop(
                    "line_too_long",
                    f"line {lineno + len(pieces) + 1} is longer than {limits.max_line_bytes} bytes",
                )
            for raw in pieces:
                lineno += 1
                if len(raw) > limits.max_line_bytes:
                    raise _Stop(
                        "line_too_long", f"line {lineno} is longer than {limits.max_line_bytes} bytes"
                    )
                yield self._decode(raw, lineno) + "\n"
        if pending:
            yield self._decode(pending, lineno + 1)

    @staticmethod
    def _decode(raw: bytes, lineno: int) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Stop("not_utf8", f"line {lineno} is not UTF-8 text (byte {exc.start})") from None
        if lineno == 1 and text.startswith("\ufeff"):
            text = text[1:]
        return text

    # ------------------------------------------------------------------ rows
    def _note(self, kind: str, text: str) -> None:
        ex = self.examples.setdefault(kind, [])
        if len(ex) < _EXAMPLES:
            ex.append(text)

    def _header(self, cells: list[str]) -> None:
        names = [c.strip() for c in cells]
        self.report.columns = names
        if len(names) > self.limits.max_columns:
            raise _Stop(
                "bad_header", f"the header has {len(names)} columns (limit {self.limits.max_columns})"
            )
        if any(not n for n in names):
            raise _Stop("bad_header", f"the header has an empty column name (column {names.index('') + 1})")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise _Stop("bad_header", f"the header repeats column names: {', '.join(dup[:5])}")
        spec = self.spec
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        if spec.target not in names:
            hint = ""
            if all(_label_key(n) != n for n in names):
                hint = " (the first line looks like data: is the header row missing?)"
            raise _Stop(
                "missing_target", f"target column {spec.target!r} is not in the header [{shown}]{hint}"
            )
        if spec.features is not None:
            absent = [f for f in spec.features if f not in names]
            if absent:
                raise _Stop(
                    "missing_features", f"feature columns not in the header: {', '.join(absent[:10])}"
                )
            self.cols = [names.index(f) for f in spec.features]
            if self.evaluation:
                extra = [n for n in names if n != spec.target and n not in spec.features]
                if extra:
                    raise _Stop(
                        "extra_columns",
                        "an evaluation set holds exactly the model's features and its target; not theirs: "
                        + ", ".join(extra[:10]),
                    )
        else:
            self.cols = [i for i, n in enumerate(names) if n != spec.target]
        key = spec.training.split_key
        if key is not None and not self.evaluation and key not in names:
            raise _Stop(
                "missing_split_key",
                f"training.split_key {key!r} is not a column of the dataset [{shown}]",
            )
        self.target_idx = names.index(spec.target)
        self.header = names
        for i in self.cols:
            self.missing[i] = self.non_numeric[i] = self.non_finite[i] = 0
            if self.collect:
                self.values[i] = array("d")

    def _row(self, cells: list[str], lineno: int) -> None:
        assert self.header is not None
        if len(cells) != len(self.header):
            self.ragged += 1
            self._note("ragged_row", f"row {lineno} has {len(cells)} fields, the header {len(self.header)}")
            return
        report = self.report
        report.rows += 1
        if report.rows > self.limits.max_rows:
            raise _Stop("too_many_rows", f"more than {self.limits.max_rows} rows (the limit)")
        # duplicates: adaptive distinct sampling on a 64-bit hash of the row's text
        h = int.from_bytes(hashlib.blake2b("\x1f".join(cells).encode(), digest_size=8).digest(), "little")
        if h < self.dup_threshold:
            self.dups.add(h)
            while len(self.dups) > self.limits.duplicate_sample:
                self.dup_threshold //= 2
                self.dups = {d for d in self.dups if d < self.dup_threshold}
        names = self.header
        collect = self.collect
        explicit = self.spec.features is not None
        for i in self.cols:
            if not explicit and self.non_numeric[i]:
                continue  # already known not to be a feature
            text = cells[i].strip()
            if text.lower() in MISSING_TOKENS:
                self.missing[i] += 1
                v = math.nan
            else:
                try:
                    v = float(text)
                except ValueError:
                    self.non_numeric[i] += 1
                    self._note("non_numeric", f"row {lineno}, column {names[i]!r}: {text[:40]!r}")
                    if not explicit:
                        self.values.pop(i, None)  # not a feature: stop collecting it
                        continue
                    v = math.nan
                else:
                    if not math.isfinite(v):
                        self.non_finite[i] += 1
                        self._note("non_finite", f"row {lineno}, column {names[i]!r}: {text[:40]!r}")
            if collect:
                self.values[i].append(v)  # explicit features, or columns numeric so far
        text = cells[self.target_idx].strip()
        if text.lower() in MISSING_TOKENS:
            self.target_missing += 1
            self._note("missing_target", f"row {lineno}")
            key: float | str = math.nan
        elif self.classification:
            key = _label_key(text)
            entry = self.labels.get(key)
            if entry is not None:
                entry[1] += 1
            elif len(self.labels) >= self.limits.max_classes:
                self.too_many_classes = True
            else:
                self.labels[key] = [text, 1]
        else:
            try:
                key = float(text)
            except ValueError:
                key = math.nan
                self.target_bad += 1
                self._note("bad_target", f"row {lineno}: {text[:40]!r} is not a number")
            else:
                if not math.isfinite(key):
                    self.target_bad += 1
                    self._note("bad_target", f"row {lineno}: {text[:40]!r} is not finite")
                else:
                    if key < self.y_min:
                        self.y_min = key
                    if key > self.y_max:
                        self.y_max = key
        if collect:
            if self.classification:
                self.y_keys.append(key)
            else:
                self.y_num.append(float(key))

    # ------------------------------------------------------------------ driver
    def run(self, chunks: Iterable[bytes]) -> DatasetReport:
        report = self.report
        try:
            reader = csv.reader(self._lines(chunks))
            for cells in reader:
                if not cells or (self.header is None and not "".join(cells).strip()):
                    continue  # blank lines
                if self.header is None:
                    self._header(cells)
                else:
                    self._row(cells, reader.line_num)
            report.complete = True
            report.sha256 = self.hash.hexdigest()
        except _Stop as stop:
            report.problems.append(stop.problem)
            return report
        except csv.Error as exc:
            report.problems.append(Problem("bad_csv", f"not a valid CSV near line {reader.line_num}: {exc}"))
            return report
        self._finish()
        return report

    def _finish(self) -> None:
        report, spec, limits = self.report, self.spec, self.limits
        problems = report.problems
        if self.header is None:
            problems.append(Problem("empty_file", "the file is empty (no header, no rows)"))
            return
        names = self.header
        if self.spec.features is not None:
            feats = list(self.cols)
        else:
            feats = []
            for i in self.cols:
                if self.non_numeric[i] or self.missing[i] == report.rows:
                    report.excluded_columns.append(names[i])
                else:
                    feats.append(i)
        self.cols = feats
        report.features = [names[i] for i in feats]
        report.missing = {names[i]: self.missing[i] for i in feats}
        report.missing[spec.target] = self.target_missing

        def add(code: str, message: str) -> None:
            ex = self.examples.get(code)
            problems.append(Problem(code, message + (f" (e.g. {'; '.join(ex)})" if ex else "")))

        if self.ragged:
            add("ragged_row", f"{self.ragged} rows do not have as many fields as the header")
        if report.rows == 0:
            problems.append(Problem("no_rows", "the file has a header but no data rows"))
            return
        need = 1 if self.evaluation else min_rows(spec, limits)
        if report.rows < need:
            problems.append(
                Problem(
                    "too_few_rows",
                    f"{report.rows} rows; at least {need} are needed for a "
                    f"{spec.training.validation_split:g} validation split",
                )
            )
        if not feats:
            problems.append(Problem("no_features", "no numeric feature columns (besides the target)"))
        if self.evaluation and report.excluded_columns:
            problems.append(
                Problem(
                    "extra_columns",
                    "an evaluation set holds only numeric features and the target; these columns are not: "
                    + ", ".join(report.excluded_columns[:10]),
                )
            )
        bad_num = [names[i] for i in feats if self.non_numeric[i]]
        if bad_num:
            add(
                "non_numeric",
                f"feature columns with text where numbers are expected: {', '.join(bad_num[:10])}",
            )
        bad_fin = [names[i] for i in feats if self.non_finite[i]]
        if bad_fin:
            add("non_finite", f"feature columns with NaN or infinite values: {', '.join(bad_fin[:10])}")
        if self.target_missing:
            add("missing_target", f"{self.target_missing} rows have no target value")
        if self.target_bad:
            add(
                "bad_target",
                f"target {spec.target!r} must be a finite number for regression; {self.target_bad} rows are not",
            )
        elif (
            not self.classification
            and not self.evaluation
            and not self.target_missing
            and self.y_min == self.y_max
        ):
            problems.append(
                Problem(
                    "constant_target",
                    f"target {spec.target!r} has the same value ({self.y_min:g}) in every row: a model "
                    "cannot learn anything from it (its error on held-out rows would be about 0 and say "
                    "nothing)",
                )
            )
        rates = {names[i]: self.missing[i] / report.rows for i in feats}
        report.max_missing_rate = max(rates.values(), default=0.0)
        over = [n for n, r in rates.items() if r > limits.max_missing_rate]
        if over:
            problems.append(
                Problem(
                    "too_many_missing",
                    f"columns missing more than {limits.max_missing_rate:.0%} of values: "
                    + ", ".join(f"{n} ({rates[n]:.1%})" for n in over[:10]),
                )
            )
        exact = self.dup_threshold == _FULL
        distinct = len(self.dups) if exact else round(len(self.dups) * (_FULL / self.dup_threshold))
        report.duplicates_exact = exact
        report.duplicate_rows = max(0, report.rows - min(distinct, report.rows))
        report.duplicate_rate = report.duplicate_rows / report.rows
        if report.duplicate_rate > limits.max_duplicate_rate:
            problems.append(
                Problem(
                    "too_many_duplicates",
                    f"{report.duplicate_rate:.1%} of rows are duplicates "
                    f"(limit {limits.max_duplicate_rate:.0%})",
                )
            )
        if self.classification:
            self._classes()

    def _classes(self) -> None:
        report, spec, problems = self.report, self.spec, self.report.problems
        if self.too_many_classes:
            problems.append(
                Problem(
                    "bad_target", f"target {spec.target!r} has more than {self.limits.max_classes} classes"
                )
            )
            return
        keys = list(self.labels)
        if all(isinstance(k, float) for k in keys):
            keys.sort()
            labels = [_label_value(k) for k in keys]
        else:
            keys.sort(key=lambda k: str(self.labels[k][0]))
            labels = [str(self.labels[k][0]) for k in keys]
        report.classes = labels
        report.class_counts = [int(self.labels[k][1]) for k in keys]
        self.key_order = keys
        if self.evaluation:
            self._evaluation_labels(keys)
            return
        if len(keys) == 1:
            problems.append(
                Problem(
                    "single_class",
                    f"target {spec.target!r} holds one class ({labels[0]}) in every row: a classifier "
                    "needs at least two",
                )
            )
        elif spec.task == "binary" and len(keys) != 2:
            problems.append(
                Problem(
                    "bad_target", f"a binary task needs exactly 2 distinct target values, found {len(keys)}"
                )
            )
        elif spec.task == "multiclass" and len(keys) < 2:
            problems.append(
                Problem(
                    "bad_target",
                    f"a multiclass task needs at least 2 distinct target values, found {len(keys)}",
                )
            )

    def _evaluation_labels(self, keys: list[float | str]) -> None:
        """An evaluation set's labels: within the model's classes when they are known; otherwise at most
        two for a binary task."""
        problems, spec = self.report.problems, self.spec
        if self.allowed_classes is not None:
            allowed = {_label_key(str(c)) for c in self.allowed_classes}
            unknown = [str(self.labels[k][0]) for k in keys if k not in allowed]
            if unknown:
                problems.append(
                    Problem(
                        "unknown_labels",
                        f"target {spec.target!r} holds labels the model does not know: "
                        f"{', '.join(unknown[:10])} (its classes: "
                        f"{', '.join(str(c) for c in self.allowed_classes[:20])})",
                    )
                )
        elif spec.task == "binary" and len(keys) > 2:
            problems.append(
                Problem(
                    "unknown_labels",
                    f"a binary model has 2 classes; target {spec.target!r} holds {len(keys)} distinct values",
                )
            )


def _too_large(spec: ModelSpec, limits: Limits, size: int | None) -> DatasetReport | None:
    """An object known (``size``) to be over ``limits.max_bytes`` is refused before a byte is read."""
    if size is None or size <= limits.max_bytes:
        return None
    report = DatasetReport(target=spec.target)
    report.problems.append(
        Problem("too_large", f"the file has {size} bytes; the limit is {limits.max_bytes}")
    )
    return report


def validate_stream(
    chunks: Iterable[bytes], spec: ModelSpec, limits: Limits | None = None, *, size: int | None = None
) -> DatasetReport:
    """Validate a CSV given as byte chunks. ``size`` (for example S3's ContentLength), when known,
    rejects an over-large object before a byte is read."""
    limits = limits or Limits()
    if (too_large := _too_large(spec, limits, size)) is not None:
        return too_large
    return _Scanner(spec, limits, collect=False).run(chunks)


def validate_evaluation_stream(
    chunks: Iterable[bytes],
    spec: ModelSpec,
    limits: Limits | None = None,
    *,
    size: int | None = None,
    features: list[str] | None = None,
    classes: list[Any] | None = None,
) -> DatasetReport:
    """Validate a pinned evaluation set (``datasets/{model}/eval/*.csv``) like a dataset, with what
    differs for one: its columns are exactly ``features`` (the spec's, else production's, else every
    numeric column) and the target (``extra_columns``), its labels are among ``classes`` when those are
    known (``unknown_labels``), one row is enough, a constant target or a single class is allowed, and
    ``training.split_key`` does not apply."""
    limits = limits or Limits()
    if (too_large := _too_large(spec, limits, size)) is not None:
        return too_large
    feats = features if features is not None else spec.features
    view = spec.model_copy(
        update={"features": feats, "training": spec.training.model_copy(update={"split_key": None})}
    )
    return _Scanner(view, limits, collect=False, evaluation=True, classes=classes).run(chunks)


def iter_file_chunks(fh: BinaryIO, chunk_size: int = CHUNK) -> Iterator[bytes]:
    while chunk := fh.read(chunk_size):
        yield chunk


def load_csv(path: str | Path, spec: ModelSpec, limits: Limits | None = None) -> LoadedDataset:
    """Validate and load a CSV file in one pass (the trainer's reader). Raises ``DatasetRejectedError``
    with the validator's reasons when the file is not acceptable."""
    import numpy as np

    from modelops.domain.errors import DatasetRejectedError

    scanner = _Scanner(spec, limits or Limits(max_bytes=1 << 62, max_rows=1 << 62), collect=True)
    with open(path, "rb") as fh:
        report = scanner.run(iter_file_chunks(fh))
    if not report.ok:
        raise DatasetRejectedError(f"dataset rejected ({report.code}): {report.reason}")
    x = np.empty((report.rows, len(scanner.cols)), dtype=np.float64)
    for j, i in enumerate(scanner.cols):
        x[:, j] = np.frombuffer(scanner.values[i], dtype=np.float64)
    if spec.task == "regression":
        y = np.frombuffer(scanner.y_num, dtype=np.float64).copy()
        classes = None
    else:
        index = {k: n for n, k in enumerate(scanner.key_order)}
        y = np.fromiter((index[k] for k in scanner.y_keys), dtype=np.int64, count=len(scanner.y_keys))
        classes = report.classes
    return LoadedDataset(report=report, features=list(report.features), x=x, y=y, classes=classes)
