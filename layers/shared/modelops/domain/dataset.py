"""Streaming validation (and loading) of a training dataset against its model spec.

The dataset is read as a stream of byte chunks (``StreamingBody.iter_chunks`` for S3, ``read(1 MiB)``
for a file) and turned into rows by ``modelops.domain.formats`` (CSV in the spec's dialect, gzip with a
bound on the decompressed bytes, Parquet one record batch at a time), with a bound on the line length,
so memory stays flat whatever the object holds: never the whole object, never one unbounded line. Per
column the validator keeps counters, at most five example cells and at most ``Limits.max_cardinality``
distinct values (counting stops past it). The SHA-256 is computed over the object's stored bytes while
streaming. What is checked (docs/training.md lists the codes):

- text (UTF-8 unless the spec's ``csv.encoding`` says otherwise; a leading BOM is dropped), CRLF or LF
  line ends, RFC 4180 quoting (``csv`` module);
- a header with unique, non-empty names that holds the target and every listed feature;
- every row has as many fields as the header;
- each feature column is *numeric* or *categorical* (declared in the spec, else inferred: see
  :func:`infer_kind`); an empty cell (or ``NA``, ``N/A``, ``null``) is *missing* in both; a numeric
  column holds finite numbers (a stray text cell is ``non_numeric``, naming the cells: the column is
  never reclassified or dropped); a categorical column holds at most ``max_cardinality`` distinct values
  of at most ``encoding.MAX_CATEGORY_CHARS`` characters, and is not an identifier (almost every value
  distinct); a missing target is rejected;
- at least enough rows for the validation split, at most ``Limits.max_rows`` rows and
  ``Limits.max_bytes`` bytes (decompressed, for ``.csv.gz``; reading stops at the limit);
- per-feature missing rate and the duplicate-row rate within limits (both reported);
- classification: the target's distinct values are the classes (2 for ``binary``); every class, and
  every class production knows, has at least ``Limits.min_class_rows`` rows (``class_coverage``);
  fewer than ``Limits.warn_class_rows`` is a warning;
- with production's input schema given (the stage decides when it applies): the dataset's features
  are production's, by name, with the same types and no frequent new category (``schema_changed``).

When the spec names no features, every column but the target is a feature, except a column with no
value at all (reported as excluded) and a text ``training.split_key`` column (an identifier).

Nothing here imports TensorFlow: the Lambda validates with it, and the trainer loads with it
(``load_csv``), so whatever validated is exactly what trains. Kept Python 3.10 compatible
(the AWS TensorFlow training image runs 3.10).
"""

from __future__ import annotations

import csv
import hashlib
import math
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from modelops.domain.encoding import MAX_CATEGORY_CHARS, MISSING_TOKENS, InputSchema
from modelops.domain.formats import PLAIN, Dialect, FormatError, csv_rows, format_of, gunzip, parquet_rows
from modelops.domain.spec import ModelSpec

CHUNK = 1024 * 1024
PLAIN_BATCH_BYTES = 256 * 1024
"""Bytes of plain lines (no quotes: ``formats.csv_rows``) the validator checks a column at a time (the
fast path, :meth:`_Scanner._plain`); 0 reads every row one at a time. Either way the report is the same."""
DATASET_WIDE = ("too_few_rows", "constant_target", "too_many_missing", "too_many_duplicates")
"""Checks of a whole dataset that a part alone cannot make (with the class checks: :func:`merge_parts`)."""
_EXAMPLES = 5
_FULL = 1 << 64
NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Limits:
    """What a dataset may be. The Lambda reads these from its environment (template.yaml)."""

    max_bytes: int = 100 * 1024 * 1024
    """Largest dataset in bytes (decompressed, for ``.csv.gz``)."""
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
    max_cardinality: int = 1000
    """Most distinct values a categorical column may hold (counting stops past it)."""
    unique_share: float = 0.5
    """A text column with more distinct values than this share of its values is an identifier..."""
    unique_min_rows: int = 50
    """... once it has at least this many values (fewer rows cannot tell)."""
    min_class_rows: int = 2
    """Fewest rows a class (seen here, or known to production) may have: fewer is ``class_coverage``."""
    warn_class_rows: int = 10
    """A class with fewer rows than this is a warning in the report and the event."""
    new_category_share: float = 0.01
    """Under schema continuity, a value outside production's vocabulary on more than this share of the
    rows (and on more rows than the vocabulary's least frequent value here, when it is full) is a
    change of the served schema."""


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
    """Stored bytes read (compressed, for ``.csv.gz``)."""
    sha256: str | None = None
    """SHA-256 of the whole stored object; None when reading stopped early (a limit, a fatal problem)."""
    complete: bool = False
    format: str = "csv"
    columns: list[str] = field(default_factory=list)
    target: str = ""
    features: list[str] = field(default_factory=list)
    feature_types: dict[str, str] = field(default_factory=dict)
    """Each feature's kind: ``numeric`` or ``categorical``."""
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per categorical feature: ``{"distinct": n, "top": [[value, rows], ...]}`` (at most 10 values)."""
    excluded_columns: list[str] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)
    max_missing_rate: float = 0.0
    duplicate_rows: int = 0
    duplicate_rate: float = 0.0
    duplicates_exact: bool = True
    classes: list[Any] | None = None
    class_counts: list[int] | None = None
    warnings: list[str] = field(default_factory=list)
    """What is worth a look but does not reject the dataset (a class with few rows, ...)."""
    dup_hashes: list[int] | None = None
    """A part's report only (:func:`validate_part`): the distinct row hashes below ``dup_threshold``,
    so that parts' duplicate estimates merge (:func:`merge_parts`)."""
    dup_threshold: int = _FULL

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
            "format": self.format,
            "columns": self.columns[:200],
            "target": self.target,
            "features": self.features,
            "feature_types": self.feature_types,
            "categories": self.categories,
            "excluded_columns": self.excluded_columns,
            "missing": self.missing,
            "max_missing_rate": round(self.max_missing_rate, 6),
            "duplicate_rows": self.duplicate_rows,
            "duplicate_rate": round(self.duplicate_rate, 6),
            "duplicates_exact": self.duplicates_exact,
            "classes": self.classes,
            "class_counts": self.class_counts,
            "warnings": self.warnings,
        }

    def to_part_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` with what a merge needs besides: every column name and the duplicate sample."""
        return {
            **self.to_dict(),
            "columns": self.columns,
            "dup_hashes": self.dup_hashes or [],
            "dup_threshold": str(self.dup_threshold),
        }

    @classmethod
    def from_part_dict(cls, doc: Mapping[str, Any]) -> DatasetReport:
        """A part's report as :meth:`to_part_dict` wrote it."""
        return cls(
            problems=[Problem(str(p["code"]), str(p["message"])) for p in doc.get("problems") or []],
            rows=int(doc.get("rows") or 0),
            bytes_read=int(doc.get("bytes_read") or 0),
            sha256=doc.get("sha256"),
            complete=bool(doc.get("complete")),
            format=str(doc.get("format") or "csv"),
            columns=list(doc.get("columns") or []),
            target=str(doc.get("target") or ""),
            features=list(doc.get("features") or []),
            feature_types=dict(doc.get("feature_types") or {}),
            categories=dict(doc.get("categories") or {}),
            excluded_columns=list(doc.get("excluded_columns") or []),
            missing={str(k): int(v) for k, v in (doc.get("missing") or {}).items()},
            classes=doc.get("classes"),
            class_counts=doc.get("class_counts"),
            warnings=list(doc.get("warnings") or []),
            dup_hashes=[int(h) for h in doc.get("dup_hashes") or []],
            dup_threshold=int(doc.get("dup_threshold") or _FULL),
        )


@dataclass
class LoadedDataset:
    """A validated dataset in memory (the trainer's input). ``x`` holds NaN where a cell was missing."""

    report: DatasetReport
    features: list[str]
    x: Any  # numpy float64 (rows, features); NaN in a categorical feature's column
    y: Any  # numpy: float64 targets (regression) or int64 class indices (classification)
    classes: list[Any] | None
    kinds: list[str] = field(default_factory=list)
    """Per feature (``features`` order): ``"numeric"`` or ``"categorical"``."""
    categories: dict[str, list[str | None]] = field(default_factory=dict)
    """Per categorical feature: each row's value as ``encoding.category`` normalizes it (None: missing).
    ``x`` holds NaN in a categorical feature's column."""


def split_sizes(n_rows: int, validation_split: float) -> tuple[int, int]:
    """(n_train, n_val) for ``n_rows`` rows: the held-out share rounded, at least one row each."""
    n_val = min(max(1, round(n_rows * validation_split)), n_rows - 1)
    return n_rows - n_val, n_val


def min_rows(spec: ModelSpec, limits: Limits) -> int:
    """Fewest rows that still give the training and the held-out split two rows each."""
    split = spec.training.validation_split
    return max(limits.min_rows, 4, math.ceil(2 / split), math.ceil(2 / (1 - split)))


def infer_kind(values: int, numbers: int) -> str:
    """The kind of an undeclared column with ``values`` non-missing cells, ``numbers`` of them numbers:
    numeric when more than half are numbers (a minority of text cells is then ``non_numeric``, never a
    reason to call the column text), categorical otherwise."""
    return NUMERIC if numbers * 2 > values else CATEGORICAL


@dataclass(frozen=True)
class Production:
    """Production's input schema and classes, for schema continuity and label sanity."""

    version: int | str
    schema: InputSchema | None = None
    """None: compare classes only (continuity does not apply: ``"schema": "reset"`` or new features)."""
    classes: list[Any] | None = None


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


class _Column:
    """What the scanner keeps about one candidate feature column: counters, a few example cells, and
    its distinct values (with their row counts) until there are more than ``cap``."""

    __slots__ = (
        "i",
        "name",
        "declared",
        "missing",
        "numbers",
        "texts",
        "non_finite",
        "text_examples",
        "long_value",
        "counts",
        "index",
        "overflow",
        "values",
        "codes",
    )

    def __init__(self, i: int, name: str, declared: str | None, collect: bool):
        self.i = i
        self.name = name
        self.declared = declared
        self.missing = self.numbers = self.texts = self.non_finite = 0
        self.text_examples: list[tuple[int, str]] = []
        self.long_value: tuple[int, int] | None = None  # (line, length) of the first over-long value
        self.counts: dict[str, int] | None = {} if declared != NUMERIC else None
        """Rows per distinct value (a category's text: ``encoding.category`` of the cell), first seen first."""
        self.index: dict[str, int] = {}
        """Collecting: each distinct value's code (its position in ``counts``)."""
        self.overflow = False
        self.values: array[float] | None = array("d") if collect and declared != CATEGORICAL else None
        self.codes: array[int] | None = array("l") if collect and declared != NUMERIC else None

    @property
    def distinct(self) -> int:
        return len(self.counts) if self.counts is not None else 0


class _Scanner:
    def __init__(
        self,
        spec: ModelSpec,
        limits: Limits,
        *,
        collect: bool,
        evaluation: bool = False,
        classes: list[Any] | None = None,
        dialect: Dialect = PLAIN,
        fmt: str = "csv",
        sink: IO[str] | None = None,
        production: Production | None = None,
        part: bool = False,
    ):
        self.part = part
        """One part of a dataset of many (:func:`validate_part`): the dataset-wide checks (row count,
        missing and duplicate rates, classes) wait for :func:`merge_parts`."""
        self.spec = spec
        self.limits = limits
        self.collect = collect
        self.evaluation = evaluation
        """A pinned evaluation set: exactly the features and the target, labels within ``classes``, no
        minimum row count, a constant target or one class allowed."""
        self.allowed_classes = classes
        self.dialect = dialect
        self.fmt = fmt
        self.sink = csv.writer(sink, lineterminator="\n") if sink is not None else None
        """Where the rows go as plain CSV (``,``, ``.``, UTF-8), for the platform's split."""
        self.sink_file = sink
        self.production = production
        self.y_min = math.inf
        self.y_max = -math.inf
        self.report = DatasetReport(target=spec.target, format=fmt)
        self.hash = hashlib.sha256()
        self.classification = spec.task != "regression"
        self.header: list[str] | None = None
        self.target_idx = -1
        self.columns: list[_Column] = []
        self.examples: dict[str, list[str]] = {}
        self.ragged = 0
        self.target_missing = 0
        self.target_bad = 0
        self.labels: dict[float | str, list[Any]] = {}  # key -> [first raw text, count]
        self.too_many_classes = False
        self.dups: set[int] = set()
        self.dup_threshold = _FULL
        self.y_num: array[float] = array("d")
        self.y_keys: list[float | str] = []
        self.key_order: list[float | str] = []
        self.features: list[_Column] = []
        self.kinds: list[str] = []

    # ------------------------------------------------------------------ bytes
    def _stored(self, chunks: Iterable[bytes], limit: int | None) -> Iterator[bytes]:
        """The stored bytes, hashed and counted (``limit``: at most that many)."""
        for chunk in chunks:
            if not chunk:
                continue
            self.report.bytes_read += len(chunk)
            self.hash.update(chunk)
            if limit is not None and self.report.bytes_read > limit:
                raise _Stop("too_large", f"the file is larger than the limit of {limit} bytes")
            yield chunk

    def _text_bytes(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The text's bytes: the stored bytes, decompressed for ``csv.gz`` (both bounded)."""
        limit = self.limits.max_bytes
        if self.fmt == "csv.gz":
            return gunzip(self._stored(chunks, None), limit)
        return self._stored(chunks, limit)

    # ------------------------------------------------------------------ rows
    def _note(self, kind: str, text: str) -> None:
        ex = self.examples.setdefault(kind, [])
        if len(ex) < _EXAMPLES:
            ex.append(text)

    def _declared(self, name: str) -> str | None:
        kind: str | None = self.spec.feature_types.get(name)
        if kind is None and self.production is not None and self.production.schema is not None:
            # a categorical column of production stays categorical even when its values read as numbers
            try:
                if self.production.schema.feature(name).categorical:
                    kind = CATEGORICAL
            except KeyError:
                pass
        return kind

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
            cols = [names.index(f) for f in spec.features]
            if self.evaluation:
                extra = [n for n in names if n != spec.target and n not in spec.features]
                if extra:
                    raise _Stop(
                        "extra_columns",
                        "an evaluation set holds exactly the model's features and its target; not theirs: "
                        + ", ".join(extra[:10]),
                    )
        else:
            cols = [i for i, n in enumerate(names) if n != spec.target]
        key = spec.training.split_key
        if key is not None and not self.evaluation and key not in names:
            raise _Stop(
                "missing_split_key",
                f"training.split_key {key!r} is not a column of the dataset [{shown}]",
            )
        self.target_idx = names.index(spec.target)
        self.header = names
        self.columns = [_Column(i, names[i], self._declared(names[i]), self.collect) for i in cols]
        if self.sink is not None:
            self.sink.writerow(names)

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
        comma = self.dialect.decimal == ","
        if comma:
            cells = [_point(c) for c in cells]
        if self.sink is not None:
            self.sink.writerow(cells)
        # duplicates: adaptive distinct sampling on a 64-bit hash of the row's text
        h = int.from_bytes(hashlib.blake2b("\x1f".join(cells).encode(), digest_size=8).digest(), "little")
        if h < self.dup_threshold:
            self.dups.add(h)
            while len(self.dups) > self.limits.duplicate_sample:
                self.dup_threshold //= 2
                self.dups = {d for d in self.dups if d < self.dup_threshold}
        cap = self.limits.max_cardinality
        for col in self.columns:
            raw = cells[col.i]
            text = raw.strip()
            if text.lower() in MISSING_TOKENS:
                col.missing += 1
                if col.values is not None:
                    col.values.append(math.nan)
                if col.codes is not None:
                    col.codes.append(-1)
                continue
            try:
                v = float(text)
            except ValueError:
                v = math.nan
                col.texts += 1
                if len(col.text_examples) < _EXAMPLES:
                    col.text_examples.append((lineno, text))
            else:
                col.numbers += 1
                if not math.isfinite(v):
                    col.non_finite += 1
                    self._note("non_finite", f"row {lineno}, column {col.name!r}: {text[:40]!r}")
            if col.values is not None:
                col.values.append(v)
            counts = col.counts
            if counts is None:
                continue
            if len(text) > MAX_CATEGORY_CHARS:
                if col.long_value is None:
                    col.long_value = (lineno, len(text))
                if col.codes is not None:
                    col.codes.append(-1)
                continue
            n = counts.get(text)
            if n is None:
                if len(counts) >= cap:  # not a category column, or too many: stop counting
                    col.overflow = True
                    col.counts = col.codes = None
                    col.index = {}
                    continue
                counts[text] = 1
                if col.codes is not None:
                    col.index[text] = len(col.index)
                    col.codes.append(col.index[text])
            else:
                counts[text] = n + 1
                if col.codes is not None:
                    col.codes.append(col.index[text])
        self._target(cells[self.target_idx], lineno)

    def _target(self, raw: str, lineno: int) -> None:
        """One row's target cell."""
        text = raw.strip()
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
        if self.collect:
            if self.classification:
                self.y_keys.append(key)
            else:
                self.y_num.append(float(key))

    # ------------------------------------------------------------------ plain batches (the fast path)
    def _plain(self, first: int, text: str) -> bool:
        """Check a batch of plain lines (``formats.csv_rows``: ``first`` is the number of its first line,
        each line's cells are ``line.split(delimiter)``) a column at a time, leaving the scanner exactly
        as :meth:`_row` on each row in turn would. False (nothing done) for what only :meth:`_row`
        does: before the header, a blank or ragged row, a row past ``max_rows``; and when loading
        (``collect``) or for a ``,`` decimal mark (the caller offers nothing then)."""
        header = self.header
        if header is None or not text or text[0] == "\n" or text[-1] == "\n" or "\n\n" in text:
            return False
        ncols = len(header)
        d = self.dialect.delimiter
        nrows = text.count("\n") + 1
        if ncols < 2 or self.report.rows + nrows > self.limits.max_rows:
            return False  # a lone empty cell is written '""' to the sink
        if self.sink_file is not None and d != "," and "," in text:
            return False  # the sink would quote such cells
        # every line starts a cell with "\n": the rows are aligned when those cells are each row's first
        cells = text.replace("\n", d + "\n").split(d)
        if len(cells) != nrows * ncols or "".join(cells[ncols::ncols]).count("\n") != nrows - 1:
            return False
        self.report.rows += nrows
        if self.sink_file is not None:
            self.sink_file.write((text if d == "," else text.replace(d, ",")) + "\n")
        self._plain_duplicates(text.replace(d, "\x1f").encode().split(b"\n"))
        notes: list[tuple[int, int, str]] = []
        for pos, col in enumerate(self.columns):
            self._plain_column(col, cells[col.i :: ncols], first, pos, notes)
        for _, _, note in sorted(notes):
            self._note("non_finite", note)
        self._plain_target(cells[self.target_idx :: ncols], first)
        return True

    def _plain_duplicates(self, rows: list[bytes]) -> None:
        """:meth:`_row`'s duplicate sample for many rows (``"\\x1f".join(cells)`` encoded, each): the
        sample after them does not depend on the order the rows come in."""
        digests = array("Q")
        blake2b = hashlib.blake2b
        digests.frombytes(b"".join([blake2b(row, digest_size=8).digest() for row in rows]))
        if sys.byteorder != "little":  # pragma: no cover - the hash is read little-endian
            digests.byteswap()
        threshold = self.dup_threshold
        if threshold == _FULL:
            self.dups.update(digests)
        else:
            self.dups.update(h for h in digests if h < threshold)
        while len(self.dups) > self.limits.duplicate_sample:
            self.dup_threshold //= 2
            self.dups = {h for h in self.dups if h < self.dup_threshold}

    def _plain_column(
        self, col: _Column, cells: list[str], first: int, pos: int, notes: list[tuple[int, int, str]]
    ) -> None:
        """One feature column's cells of a plain batch (row ``first + k`` holds ``cells[k]``; the first
        row's cell may start with ``\\n``, which strip() removes as :meth:`_row` would). ``notes``:
        where its non-finite numbers are, ``(k, pos, note)``, for the batch's notes in row order."""
        if col.counts is None:  # numeric: only counters, so one float() over the cells
            numbers, missing = cells, 0
            try:
                total = sum(map(float, numbers))
            except ValueError:
                numbers = [c for c in cells if c]
                missing = len(cells) - len(numbers)
                try:
                    total = sum(map(float, numbers)) if missing else math.nan
                except ValueError:
                    total = math.nan
            if math.isfinite(total):  # then every cell was a finite number, or empty
                col.missing += missing
                col.numbers += len(numbers)
                return
        # each distinct cell once, in the order of its first row: what _row counts does not depend on
        # the order of the cells, but for the distinct values' order and the examples (found below)
        tally = Counter(cells)
        counts = col.counts
        texts: set[str] = set()
        bad: set[str] = set()
        long: str | None = None
        cap = self.limits.max_cardinality
        for raw, n in tally.items():
            text = raw.strip()
            if text.lower() in MISSING_TOKENS:
                col.missing += n
                continue
            try:
                v = float(text)
            except ValueError:
                col.texts += n
                texts.add(raw)
            else:
                col.numbers += n
                if not math.isfinite(v):
                    col.non_finite += n
                    bad.add(raw)
            if counts is None:
                continue
            if len(text) > MAX_CATEGORY_CHARS:
                if long is None and col.long_value is None:
                    long = raw
                continue
            seen = counts.get(text)
            if seen is not None:
                counts[text] = seen + n
            elif len(counts) >= cap:  # a new value past the cap: counting stops here, as in _row
                col.overflow = True
                col.counts = None
                col.index = {}
                counts = None
            else:
                counts[text] = n
        if long is not None:
            col.long_value = (first + cells.index(long), len(long.strip()))
        if texts and len(col.text_examples) < _EXAMPLES:
            for k, raw in enumerate(cells):
                if raw in texts:
                    col.text_examples.append((first + k, raw.strip()))
                    if len(col.text_examples) >= _EXAMPLES:
                        break
        if bad and len(self.examples.get("non_finite", ())) < _EXAMPLES:
            found = 0
            for k, raw in enumerate(cells):
                if raw in bad:
                    notes.append((k, pos, f"row {first + k}, column {col.name!r}: {raw.strip()[:40]!r}"))
                    found += 1
                    if found >= _EXAMPLES:
                        break

    def _plain_target(self, cells: list[str], first: int) -> None:
        """The target's cells of a plain batch; a missing or bad one: :meth:`_target` on each, in order."""
        if self.classification:
            tally = Counter(cells)
            texts = [raw.strip() for raw in tally]
            if not any(t.lower() in MISSING_TOKENS for t in texts):
                labels, most = self.labels, self.limits.max_classes
                for text, n in zip(texts, tally.values(), strict=True):
                    key = _label_key(text)
                    entry = labels.get(key)
                    if entry is not None:
                        entry[1] += n
                    elif len(labels) >= most:
                        self.too_many_classes = True
                    else:
                        labels[key] = [text, n]
                return
        else:
            try:
                values = list(map(float, cells))
            except ValueError:
                values = [math.nan]
            if math.isfinite(sum(values)):
                low, high = min(values), max(values)
                if low < self.y_min:
                    self.y_min = low
                if high > self.y_max:
                    self.y_max = high
                return
        for k, raw in enumerate(cells):
            self._target(raw, first + k)

    # ------------------------------------------------------------------ driver
    def run(self, chunks: Iterable[bytes]) -> DatasetReport:
        """Validate CSV (or ``.csv.gz``) bytes."""
        fast = not self.collect and self.dialect.decimal == "."
        return self._drive(
            lambda: csv_rows(
                self._text_bytes(chunks),
                self.dialect,
                max_line_bytes=self.limits.max_line_bytes,
                plain=self._plain if fast else None,
                batch_bytes=PLAIN_BATCH_BYTES,
            )
        )

    def run_parquet(self, path: Path) -> DatasetReport:
        """Validate a Parquet file (local: its footer comes first): hashed, then read by record batch."""

        def rows() -> Iterator[tuple[list[str], int]]:
            with open(path, "rb") as fh:
                for _ in self._stored(iter_file_chunks(fh), self.limits.max_bytes):
                    pass
            yield from parquet_rows(path, max_columns=self.limits.max_columns)

        return self._drive(rows)

    def _drive(self, rows: Any) -> DatasetReport:
        report = self.report
        try:
            for cells, lineno in rows():
                if not cells or (self.header is None and not "".join(cells).strip()):
                    continue  # blank lines
                if self.header is None:
                    self._header(cells)
                else:
                    self._row(cells, lineno)
            report.complete = True
            report.sha256 = self.hash.hexdigest()
        except _Stop as stop:
            report.problems.append(stop.problem)
            return report
        except FormatError as exc:
            report.problems.append(Problem(exc.code, str(exc)))
            return report
        self._finish()
        if self.part:
            self._as_part()
        return report

    def _as_part(self) -> None:
        """Keep only the part's own problems; hand over the duplicate sample for the merge."""
        report = self.report
        wide = set(DATASET_WIDE)
        if self.classification:
            wide |= {"bad_target", "single_class", "class_coverage"}
        report.problems = [p for p in report.problems if p.code not in wide]
        report.warnings = []
        report.dup_hashes = sorted(self.dups)
        report.dup_threshold = self.dup_threshold

    # ------------------------------------------------------------------ verdict
    def _kind(self, col: _Column) -> str | None:
        """The column's kind, or None when it is no feature (no value at all, or a text split key)."""
        if col.declared is not None:
            return col.declared
        values = col.numbers + col.texts
        explicit = self.spec.features is not None
        if values == 0:
            return None if not explicit else NUMERIC
        kind = infer_kind(values, col.numbers)
        if kind == CATEGORICAL and not explicit and col.name == self.spec.training.split_key:
            return None  # an identifier that decides the split, not a feature
        return kind

    def _finish(self) -> None:
        report, spec, limits = self.report, self.spec, self.limits
        problems = report.problems
        if self.header is None:
            problems.append(Problem("empty_file", "the file is empty (no header, no rows)"))
            return
        for col in self.columns:
            kind = self._kind(col)
            if kind is None:
                report.excluded_columns.append(col.name)
            else:
                self.features.append(col)
                self.kinds.append(kind)
        feats = self.features
        report.features = [c.name for c in feats]
        report.feature_types = dict(zip(report.features, self.kinds, strict=True))
        report.missing = {c.name: c.missing for c in feats}
        report.missing[spec.target] = self.target_missing
        for col, kind in zip(feats, self.kinds, strict=True):
            if kind == CATEGORICAL and col.counts is not None:
                top = sorted(col.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
                report.categories[col.name] = {"distinct": col.distinct, "top": [[v, n] for v, n in top]}

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
            problems.append(Problem("no_features", "no feature columns (besides the target)"))
        if self.evaluation and report.excluded_columns:
            problems.append(
                Problem(
                    "extra_columns",
                    "an evaluation set holds only the model's features and the target; these columns are "
                    "not: " + ", ".join(report.excluded_columns[:10]),
                )
            )
        if self.production is not None and self.production.schema is not None and feats:
            self._continuity(self.production.schema, self.production.version)
        self._cells()
        bad_fin = [c.name for c, k in zip(feats, self.kinds, strict=True) if k == NUMERIC and c.non_finite]
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
        rates = {c.name: c.missing / report.rows for c in feats}
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

    def _cells(self) -> None:
        """Per-column cell problems: text in a numeric column (the cells named), a categorical column
        with too many distinct values, or with an over-long value."""
        problems, limits = self.report.problems, self.limits
        stray: list[str] = []
        wide: list[str] = []
        long: list[str] = []
        for col, kind in zip(self.features, self.kinds, strict=True):
            if kind == NUMERIC:
                if col.texts:
                    cells = "; ".join(
                        f"row {ln}, column {col.name!r}: {v[:40]!r}" for ln, v in col.text_examples
                    )
                    more = f" and {col.texts - len(col.text_examples)} more" if col.texts > _EXAMPLES else ""
                    share = col.numbers / max(col.numbers + col.texts, 1)
                    why = "declared numeric" if col.declared == NUMERIC else f"{share:.0%} of its values are"
                    stray.append(f"{cells}{more} ({why} numbers)")
                continue
            values = col.numbers + col.texts
            if col.long_value is not None:
                line, length = col.long_value
                long.append(
                    f"column {col.name!r}, row {line}: a {length}-character value (at most "
                    f"{MAX_CATEGORY_CHARS})"
                )
            elif col.overflow:
                wide.append(f"column {col.name!r} has more than {limits.max_cardinality} distinct values")
            elif values >= limits.unique_min_rows and col.distinct > limits.unique_share * values:
                wide.append(
                    f"column {col.name!r} has {col.distinct} distinct values in {values} rows "
                    "(an identifier, not a category)"
                )
        if stray:
            problems.append(
                Problem(
                    "non_numeric",
                    "text where numbers are expected (a numeric column stays numeric: correct or empty "
                    "these cells): " + "; ".join(stray[:10]),
                )
            )
        if wide:
            problems.append(
                Problem(
                    "high_cardinality",
                    "; ".join(wide[:10])
                    + ": too many values to be a categorical feature; list the features in the spec "
                    "without it, or derive a coarser column",
                )
            )
        if long:
            problems.append(Problem("category_too_long", "; ".join(long[:10])))

    def _continuity(self, schema: InputSchema, version: int | str) -> None:
        """``schema_changed`` when this dataset's features would not give production's input schema:
        names (by name; the order may differ), types, or a frequent value outside a vocabulary."""
        report = self.report
        v = f"production v{version}"
        mine = {c.name: (c, k) for c, k in zip(self.features, self.kinds, strict=True)}
        theirs = schema.names
        changes: list[str] = []
        gone = [n for n in theirs if n not in mine]
        new = [n for n in mine if n not in theirs]
        if len(gone) == 1 and len(new) == 1:
            changes.append(f"column {gone[0]!r} of {v} is missing and {new[0]!r} is new (renamed?)")
        else:
            if gone:
                changes.append(f"columns of {v} missing here: {', '.join(map(repr, gone[:10]))}")
            if new:
                changes.append(f"columns not in {v}: {', '.join(map(repr, new[:10]))}")
        for f in schema.features:
            if f.name not in mine:
                continue
            col, kind = mine[f.name]
            if kind != f.kind:
                seen = "text" if kind == CATEGORICAL else "numbers"
                example = f" (e.g. row {col.text_examples[0][0]}: {col.text_examples[0][1][:40]!r})"
                changes.append(
                    f"column {f.name!r} is {f.kind} in {v}, {seen} here"
                    + (example if kind == CATEGORICAL and col.text_examples else "")
                )
            elif f.categorical and col.counts is not None:
                changes.extend(self._new_categories(f.name, f.vocabulary, col.counts, v))
        if changes:
            report.problems.append(
                Problem(
                    "schema_changed",
                    "this dataset would change the input schema "
                    + v
                    + " serves: "
                    + "; ".join(changes)
                    + ' (to train a new schema, say so in the spec: "schema": "reset", or a new features list)',
                )
            )
            return
        # accepted under continuity: production's feature order (columns are mapped by name)
        order = {n: k for k, n in enumerate(theirs)}
        pairs = sorted(zip(self.features, self.kinds, strict=True), key=lambda p: order[p[0].name])
        self.features = [p[0] for p in pairs]
        self.kinds = [p[1] for p in pairs]
        report.features = [c.name for c in self.features]
        report.feature_types = dict(zip(report.features, self.kinds, strict=True))

    def _new_categories(
        self, name: str, vocabulary: tuple[str, ...], counts: Mapping[str, int], v: str
    ) -> list[str]:
        rows = self.report.rows
        known = set(vocabulary)
        floor = self.limits.new_category_share * rows
        if vocabulary and len(vocabulary) >= self.spec.training.max_categories:
            floor = max(floor, min(counts.get(x, 0) for x in vocabulary))
        frequent = sorted(((n, x) for x, n in counts.items() if x not in known and n > floor), reverse=True)
        if not frequent:
            return []
        shown = ", ".join(f"{x[:40]!r} ({n / rows:.1%} of rows)" for n, x in frequent[:5])
        return [f"column {name!r} has values {v}'s vocabulary does not hold: {shown}"]

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
        else:
            self._coverage(keys, labels)

    def _coverage(self, keys: list[float | str], labels: list[Any]) -> None:
        """Label sanity: every class here, and every class production knows, has enough rows."""
        report, limits = self.report, self.limits
        counts = {str(label): int(self.labels[k][1]) for k, label in zip(keys, labels, strict=True)}
        known: list[str] = []
        prod = self.production
        if prod is not None and prod.classes is not None:
            seen = set(keys)
            for c in prod.classes:
                if _label_key(str(c)) not in seen:
                    known.append(str(c))
            for c in known:
                report.warnings.append(f"class {c} of production v{prod.version} has no rows in this dataset")
        few = [(c, n) for c, n in counts.items() if n < limits.warn_class_rows]
        for c, n in few:
            report.warnings.append(f"class {c} has {n} rows (fewer than {limits.warn_class_rows})")
        # a class production knows may go only when the spec resets the schema (no continuity then)
        binding = known if prod is not None and prod.schema is not None else []
        under = [(c, n) for c, n in counts.items() if n < limits.min_class_rows] + [(c, 0) for c in binding]
        if under:
            shown = ", ".join(f"{c}: {n}" for c, n in under[:10])
            everyone = ", ".join(f"{c}: {n}" for c, n in list(counts.items())[:20])
            report.problems.append(
                Problem(
                    "class_coverage",
                    f"classes with fewer than {limits.min_class_rows} rows: {shown} (rows per class: "
                    f"{everyone}): add rows of those classes"
                    + (' (or, to drop a class production knows, "schema": "reset")' if binding else ""),
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


def _point(cell: str) -> str:
    """A cell of a ``,``-decimal file as plain CSV writes it: a number's ``,`` becomes ``.``."""
    if "," not in cell or "." in cell:
        return cell
    candidate = cell.replace(",", ".")
    try:
        float(candidate)
    except ValueError:
        return cell
    return candidate


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
    chunks: Iterable[bytes],
    spec: ModelSpec,
    limits: Limits | None = None,
    *,
    size: int | None = None,
    fmt: str = "csv",
    sink: IO[str] | None = None,
    production: Production | None = None,
) -> DatasetReport:
    """Validate a CSV (``fmt`` ``csv``, in the spec's dialect) or gzip-compressed CSV (``csv.gz``) given
    as byte chunks. ``size`` (for example S3's ContentLength), when known, rejects an over-large object
    before a byte is read. ``sink``: the rows are also written there as plain CSV (the platform's split
    reads them). ``production``: its schema and classes, for continuity and label sanity."""
    limits = limits or Limits()
    if (too_large := _too_large(spec, limits, size)) is not None:
        return too_large
    if fmt not in ("csv", "csv.gz"):
        raise ValueError(f"validate_stream reads csv and csv.gz, not {fmt!r} (use validate_file)")
    scanner = _Scanner(
        spec, limits, collect=False, dialect=Dialect.of(spec.csv), fmt=fmt, sink=sink, production=production
    )
    return scanner.run(chunks)


def validate_file(
    path: str | Path,
    spec: ModelSpec,
    limits: Limits | None = None,
    *,
    fmt: str | None = None,
    sink: IO[str] | None = None,
    production: Production | None = None,
) -> DatasetReport:
    """:func:`validate_stream` for a local file, in any format (``fmt`` defaults to the file name's:
    Parquet needs a file, its footer comes first)."""
    limits = limits or Limits()
    fmt = fmt or format_of(str(path)) or "csv"
    if fmt == "parquet":
        if (too_large := _too_large(spec, limits, Path(path).stat().st_size)) is not None:
            return too_large
        scanner = _Scanner(spec, limits, collect=False, fmt=fmt, sink=sink, production=production)
        return scanner.run_parquet(Path(path))
    with open(path, "rb") as fh:
        return validate_stream(iter_file_chunks(fh), spec, limits, fmt=fmt, sink=sink, production=production)


def validate_evaluation_stream(
    chunks: Iterable[bytes],
    spec: ModelSpec,
    limits: Limits | None = None,
    *,
    size: int | None = None,
    features: list[str] | None = None,
    classes: list[Any] | None = None,
    kinds: Mapping[str, str] | None = None,
    fmt: str = "csv",
    sink: IO[str] | None = None,
    path: Path | None = None,
) -> DatasetReport:
    """Validate a pinned evaluation set (``datasets/{model}/eval/*.csv``) like a dataset, with what
    differs for one: its columns are exactly ``features`` (the spec's, else production's, else every
    column) of the types ``kinds`` (production's) and the target (``extra_columns``), its labels are among
    ``classes`` when those are known (``unknown_labels``), one row is enough, a constant target or a
    single class is allowed, and ``training.split_key`` does not apply. ``path``: the spooled file
    (needed for Parquet, whose ``chunks`` are then ignored)."""
    limits = limits or Limits()
    if (too_large := _too_large(spec, limits, size)) is not None:
        return too_large
    feats = features if features is not None else spec.features
    types: dict[str, str] = dict(spec.feature_types)
    if kinds:
        types.update({k: v for k, v in kinds.items() if feats is not None and k in feats})
    view = spec.model_copy(
        update={
            "features": feats,
            "feature_types": types if feats is not None else {},
            "training": spec.training.model_copy(update={"split_key": None}),
        }
    )
    scanner = _Scanner(
        view,
        limits,
        collect=False,
        evaluation=True,
        classes=classes,
        dialect=Dialect.of(spec.csv),
        fmt=fmt,
        sink=sink,
    )
    if fmt == "parquet":
        assert path is not None, "a Parquet evaluation set is read from its spooled file"
        return scanner.run_parquet(path)
    return scanner.run(chunks)


def iter_file_chunks(fh: BinaryIO, chunk_size: int = CHUNK) -> Iterator[bytes]:
    while chunk := fh.read(chunk_size):
        yield chunk


def load_csv(
    path: str | Path,
    spec: ModelSpec,
    limits: Limits | None = None,
    *,
    schema: InputSchema | None = None,
    dialect: Dialect | None = None,
) -> LoadedDataset:
    """Validate and load a dataset file in one pass (the trainer's reader). Raises
    ``DatasetRejectedError`` with the validator's reasons when the file is not acceptable.

    The platform hands every job plain CSV (``inputs/{model}/{job}/train.csv``), so the spec's ``csv``
    dialect is not applied here unless ``dialect`` says so. ``schema`` (production's input schema, the
    job's ``input_schema.json``): load exactly its features, by name, in its order and of its types."""
    import numpy as np

    from modelops.domain.errors import DatasetRejectedError

    if schema is not None:
        spec = spec.model_copy(
            update={
                "features": list(schema.names),
                "feature_types": {f.name: f.kind for f in schema.features},
            }
        )
    scanner = _Scanner(
        spec,
        limits or Limits(max_bytes=1 << 62, max_rows=1 << 62),
        collect=True,
        dialect=dialect or PLAIN,
        fmt=format_of(str(path)) or "csv",
    )
    if scanner.fmt == "parquet":
        report = scanner.run_parquet(Path(path))
    else:
        with open(path, "rb") as fh:
            report = scanner.run(iter_file_chunks(fh))
    if not report.ok:
        raise DatasetRejectedError(f"dataset rejected ({report.code}): {report.reason}")
    x = np.full((report.rows, len(scanner.features)), np.nan, dtype=np.float64)
    categories: dict[str, list[str | None]] = {}
    for j, (col, kind) in enumerate(zip(scanner.features, scanner.kinds, strict=True)):
        if kind == CATEGORICAL:
            assert col.codes is not None and col.counts is not None
            names = list(col.counts)
            categories[col.name] = [names[c] if c >= 0 else None for c in col.codes]
        else:
            assert col.values is not None
            x[:, j] = np.frombuffer(col.values, dtype=np.float64)
    if spec.task == "regression":
        y = np.frombuffer(scanner.y_num, dtype=np.float64).copy()
        classes = None
    else:
        index = {k: n for n, k in enumerate(scanner.key_order)}
        y = np.fromiter((index[k] for k in scanner.y_keys), dtype=np.int64, count=len(scanner.y_keys))
        classes = report.classes
    return LoadedDataset(
        report=report,
        features=list(report.features),
        x=x,
        y=y,
        classes=classes,
        kinds=list(scanner.kinds),
        categories=categories,
    )


def validate_part(
    chunks: Iterable[bytes],
    spec: ModelSpec,
    limits: Limits | None = None,
    *,
    size: int | None = None,
    fmt: str = "csv",
    sink: IO[str] | None = None,
    production: Production | None = None,
    path: Path | None = None,
) -> DatasetReport:
    """Validate one part of a dataset of many (docs/training.md "Datasets of many parts") as
    :func:`validate_stream` does a dataset (``limits.max_bytes`` applies to the part), without the
    checks only the whole dataset can make (``DATASET_WIDE`` and, for classification, the classes):
    :func:`merge_parts` makes them. The report carries the duplicate sample (``dup_hashes``).
    ``path``: a Parquet part's spooled file (its ``chunks`` are then ignored)."""
    limits = limits or Limits()
    if (too_large := _too_large(spec, limits, size)) is not None:
        return too_large
    scanner = _Scanner(
        spec,
        limits,
        collect=False,
        dialect=Dialect.of(spec.csv) if fmt != "parquet" else PLAIN,
        fmt=fmt,
        sink=sink,
        production=production,
        part=True,
    )
    if fmt == "parquet":
        assert path is not None, "a Parquet part is read from its spooled file"
        return scanner.run_parquet(path)
    return scanner.run(chunks)


def merge_parts(
    parts: list[tuple[str, DatasetReport]], spec: ModelSpec, limits: Limits | None = None
) -> DatasetReport:
    """One report for a dataset of many parts, from each part's (``(name, report)``, in part order).

    A part that failed its own checks rejects the whole dataset, named (the first problem's code, every
    failing part in the reason). Then the parts must agree: the same columns, features and feature
    kinds as the first part (``schema_mismatch``, naming the part that differs). Then the dataset-wide
    checks on the sums: rows, missing rates, classes (every class's rows added), duplicates. The
    duplicate estimate merges exactly: each part keeps the distinct row hashes below its threshold; the
    union of the hashes below the smallest threshold, halved again while it holds more than
    ``Limits.duplicate_sample``, is the sample one pass over all the rows keeps (the count below a
    threshold only grows with the rows), so the estimate is the one-pass estimate (exact while no
    sample overflowed). ``sha256`` is the SHA-256 of
    the parts' SHA-256s, sorted (renaming or reordering the parts changes nothing). A dataset of parts is never checked against production's input
    schema here: each part was."""
    limits = limits or Limits()
    merged = DatasetReport(target=spec.target)
    if not parts:
        merged.problems.append(Problem("no_rows", "the dataset has no parts"))
        return merged
    bad = [(name, r) for name, r in parts if not r.ok]
    if bad:
        merged.problems.append(
            Problem(
                bad[0][1].code or "invalid_dataset",
                "; ".join(f"part {name}: {r.reason}" for name, r in bad[:10])
                + (f" (and {len(bad) - 10} more parts)" if len(bad) > 10 else ""),
            )
        )
        merged.warnings = [f"rejected part: {name}" for name, _ in bad[:100]]
        return merged
    first_name, first = parts[0]
    for name, r in parts[1:]:
        if r.columns != first.columns:
            why = f"its header is {r.columns[:20]}, {first_name}'s is {first.columns[:20]}"
        elif r.feature_types != first.feature_types:
            diff = [
                f"{f!r} is {r.feature_types.get(f, 'excluded')} there, {first.feature_types.get(f, 'excluded')} "
                f"in {first_name}"
                for f in sorted(set(r.feature_types) | set(first.feature_types))
                if r.feature_types.get(f) != first.feature_types.get(f)
            ]
            why = "feature types differ: " + "; ".join(diff[:10])
        else:
            continue
        merged.problems.append(
            Problem("schema_mismatch", f"part {name} does not match the dataset's first part: {why}")
        )
        return merged
    merged.columns = list(first.columns)
    merged.features = list(first.features)
    merged.feature_types = dict(first.feature_types)
    merged.excluded_columns = list(first.excluded_columns)
    merged.format = first.format
    merged.rows = sum(r.rows for _, r in parts)
    merged.bytes_read = sum(r.bytes_read for _, r in parts)
    merged.complete = True
    merged.sha256 = hashlib.sha256("\n".join(sorted(str(r.sha256) for _, r in parts)).encode()).hexdigest()
    merged.missing = {c: sum(r.missing.get(c, 0) for _, r in parts) for c in [*merged.features, spec.target]}
    problems = merged.problems
    need = min_rows(spec, limits)
    if merged.rows < need:
        problems.append(
            Problem("too_few_rows", f"{merged.rows} rows in all parts; at least {need} are needed")
        )
    rows = max(merged.rows, 1)
    rates = {c: merged.missing[c] / rows for c in merged.features}
    merged.max_missing_rate = max(rates.values(), default=0.0)
    over = [n for n, r in rates.items() if r > limits.max_missing_rate]
    if over:
        problems.append(
            Problem(
                "too_many_missing",
                f"columns missing more than {limits.max_missing_rate:.0%} of values: "
                + ", ".join(f"{n} ({rates[n]:.1%})" for n in over[:10]),
            )
        )
    threshold = min(r.dup_threshold for _, r in parts)
    sample = {h for _, r in parts for h in (r.dup_hashes or []) if h < threshold}
    while len(sample) > limits.duplicate_sample:  # as one pass would have shrunk it
        threshold //= 2
        sample = {h for h in sample if h < threshold}
    exact = threshold == _FULL
    distinct = len(sample) if exact else round(len(sample) * (_FULL / threshold))
    merged.duplicates_exact = exact
    merged.duplicate_rows = max(0, merged.rows - min(distinct, merged.rows))
    merged.duplicate_rate = merged.duplicate_rows / rows
    if merged.duplicate_rate > limits.max_duplicate_rate:
        problems.append(
            Problem(
                "too_many_duplicates",
                f"{merged.duplicate_rate:.1%} of rows are duplicates (limit {limits.max_duplicate_rate:.0%})",
            )
        )
    if spec.task != "regression":
        _merge_classes(merged, parts, spec, limits)
    return merged


def _merge_classes(
    merged: DatasetReport, parts: list[tuple[str, DatasetReport]], spec: ModelSpec, limits: Limits
) -> None:
    counts: dict[float | str, list[Any]] = {}
    for _, r in parts:
        for label, n in zip(r.classes or [], r.class_counts or [], strict=False):
            key = _label_key(str(label))
            entry = counts.setdefault(key, [label, 0])
            entry[1] += int(n)
    keys = list(counts)
    if all(isinstance(k, float) for k in keys):
        keys.sort()
        labels: list[Any] = [_label_value(k) for k in keys]
    else:
        keys.sort(key=lambda k: str(counts[k][0]))
        labels = [str(counts[k][0]) for k in keys]
    merged.classes = labels
    merged.class_counts = [int(counts[k][1]) for k in keys]
    problems = merged.problems
    if len(keys) > limits.max_classes:
        problems.append(
            Problem("bad_target", f"target {spec.target!r} has more than {limits.max_classes} classes")
        )
    elif len(keys) < 2:
        problems.append(
            Problem(
                "single_class",
                f"target {spec.target!r} holds one class in every part: a classifier needs two",
            )
        )
    elif spec.task == "binary" and len(keys) != 2:
        problems.append(
            Problem("bad_target", f"a binary task needs exactly 2 distinct target values, found {len(keys)}")
        )
    else:
        under = [
            (c, n) for c, n in zip(labels, merged.class_counts, strict=True) if n < limits.min_class_rows
        ]
        if under:
            problems.append(
                Problem(
                    "class_coverage",
                    f"classes with fewer than {limits.min_class_rows} rows in all parts: "
                    + ", ".join(f"{c}: {n}" for c, n in under[:10]),
                )
            )
        merged.warnings = [
            f"class {c} has {n} rows (fewer than {limits.warn_class_rows})"
            for c, n in zip(labels, merged.class_counts, strict=True)
            if n < limits.warn_class_rows
        ]
