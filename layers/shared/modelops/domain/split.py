"""The platform's split of a dataset into training rows and evaluation rows (docs/training.md "The
platform's split").

Every row of an accepted dataset goes to one side **by a hash of its content**, never by its position
or a random draw, so the same row lands on the same side in every dataset of the model: a row that
production was trained on can never be one of a later candidate's evaluation rows.

- The row's *identity*: its canonical cells (:func:`canonical_cell`) for the features (the spec's
  order, or the columns validation found) and then the target, joined by U+001F; with
  ``training.split_key``, only that column's canonical cell (rows sharing it go together).
- Its *bucket*: ``int(sha256(identity)[:8], 16) / 2**32``, a number in [0, 1).
- Evaluation when ``bucket < share`` (``training.validation_split``), training otherwise.

Canonical cells make the identity independent of how a number is written (``1``, ``1.0`` and
`` 1e0 `` are one value) and of what a missing cell is called (empty, ``NA``, ``null``...).

:func:`split_csv` streams a validated CSV (a local file) into the two sides' files, keeping memory
flat; :func:`check_split` says whether the training side can still train. Pure Python, no I/O beyond
the local files named (the stage uploads them). Kept Python 3.10 compatible, like the validator.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.domain.dataset import Limits, Problem, _label_key, _label_value, min_rows
from modelops.domain.encoding import MISSING_TOKENS
from modelops.domain.spec import ModelSpec

METHOD = "sha256-row-v1"
"""The rule's name, recorded with every split (a different rule would be a new name)."""
SEPARATOR = "\x1f"


# ---------------------------------------------------------------------------- one row
def canonical_cell(text: str) -> str:
    """A cell as the split sees it: stripped; missing (empty, ``NA``, ``N/A``, ``null``) is ``""``; a
    finite number is Python's ``repr`` of its float (``1`` and ``1.0`` agree, ``-0`` is ``0.0``);
    anything else is the stripped text."""
    t = text.strip()
    if t.lower() in MISSING_TOKENS:
        return ""
    try:
        v = float(t)
    except ValueError:
        return t
    if not math.isfinite(v):
        return t
    return repr(v + 0.0)  # -0.0 + 0.0 == 0.0


def identity(cells: Sequence[str]) -> str:
    """The text hashed for a row: its canonical cells joined by U+001F."""
    return SEPARATOR.join(canonical_cell(c) for c in cells)


def bucket(text: str) -> float:
    """``int(sha256(text)[:8], 16) / 2**32``: where in [0, 1) a row's identity falls."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def is_evaluation(text: str, share: float) -> bool:
    """True when the identity ``text`` belongs to the evaluation side for ``share``."""
    return bucket(text) < share


# ---------------------------------------------------------------------------- one dataset
@dataclass(frozen=True)
class SplitPlan:
    """How one dataset's rows are split: which columns make a row's identity, which go to the
    evaluation file (the features, then the target), and the share."""

    share: float
    header: tuple[str, ...]
    """The dataset's column names (stripped), as in its header."""
    features: tuple[str, ...]
    target: str
    key_column: str | None = None

    @classmethod
    def for_dataset(cls, spec: ModelSpec, header: Sequence[str], features: Sequence[str]) -> SplitPlan:
        """The plan for a dataset that validated with ``header`` and ``features`` (the spec's, or the
        columns validation found when the spec lists none)."""
        names = tuple(h.strip() for h in header)
        key = spec.training.split_key
        if key is not None and key not in names:
            raise ValueError(f"training.split_key {key!r} is not a column of the dataset")
        return cls(
            share=spec.training.validation_split,
            header=names,
            features=tuple(features),
            target=spec.target,
            key_column=key,
        )

    @property
    def evaluation_columns(self) -> tuple[str, ...]:
        """The evaluation file's header: the features in order, then the target."""
        return (*self.features, self.target)

    def _index(self) -> tuple[list[int], list[int]]:
        pos = {n: i for i, n in enumerate(self.header)}
        out = [pos[c] for c in self.evaluation_columns]
        ident = [pos[self.key_column]] if self.key_column is not None else out
        return ident, out

    def row_identity(self, cells: Sequence[str]) -> str:
        ident, _ = self._index()
        return identity([cells[i] for i in ident])

    def to_evaluation(self, cells: Sequence[str]) -> bool:
        return is_evaluation(self.row_identity(cells), self.share)


@dataclass
class Side:
    """One side's file: where it was written, its rows and the SHA-256 of its bytes."""

    path: Path
    rows: int = 0
    sha256: str = ""
    size: int = 0

    def summary(self) -> dict[str, Any]:
        return {"rows": self.rows, "sha256": self.sha256, "size": self.size}


@dataclass
class SplitResult:
    plan: SplitPlan
    train: Side
    evaluation: Side
    train_classes: list[Any] | None = None
    """Classification: the classes the training rows hold (sorted like the validator's)."""
    train_target_range: tuple[float, float] | None = None
    """Regression: the smallest and largest target of the training rows."""
    evaluation_classes: list[Any] | None = None
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What the job record keeps (the keys are added by the stage)."""
        return {
            "method": METHOD,
            "share": self.plan.share,
            "key_column": self.plan.key_column,
            "train": self.train.summary(),
            "evaluation": {**self.evaluation.summary(), "columns": list(self.plan.evaluation_columns)},
            **({"notes": self.notes} if self.notes else {}),
        }


def _rows(src: Path) -> Iterator[list[str]]:
    """The rows of a CSV the validator accepted, parsed as it parsed them (a BOM dropped, blank lines
    skipped); the header first."""
    with open(src, encoding="utf-8-sig", newline="") as fh:
        header_seen = False
        for cells in csv.reader(fh):
            if not cells or (not header_seen and not "".join(cells).strip()):
                continue
            header_seen = True
            yield cells


def _evaluation_cell(text: str) -> str:
    t = text.strip()
    return "" if t.lower() in MISSING_TOKENS else t


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _sorted_labels(keys: set[float | str]) -> list[Any]:
    if all(isinstance(k, float) for k in keys):
        return [_label_value(k) for k in sorted(keys)]
    return sorted(str(k) if not isinstance(k, float) else str(_label_value(k)) for k in keys)


def split_csv(src: Path, plan: SplitPlan, train_path: Path, evaluation_path: Path, task: str) -> SplitResult:
    """Stream the validated CSV at ``src`` into ``train_path`` (the original header and columns, every
    training row) and ``evaluation_path`` (header: the features then the target; the evaluation rows,
    cells stripped, missing cells empty). One row in memory at a time."""
    ident, out = plan._index()
    share = plan.share
    classification = task != "regression"
    train = Side(train_path)
    evaluation = Side(evaluation_path)
    train_labels: set[float | str] = set()
    eval_labels: set[float | str] = set()
    lo, hi = math.inf, -math.inf
    target = plan.header.index(plan.target)
    rows = _rows(src)
    with (
        open(train_path, "w", encoding="utf-8", newline="") as tf,
        open(evaluation_path, "w", encoding="utf-8", newline="") as ef,
    ):
        tw = csv.writer(tf, lineterminator="\n")
        ew = csv.writer(ef, lineterminator="\n")
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{src} has no header")
        tw.writerow([h.strip() for h in header])
        ew.writerow(plan.evaluation_columns)
        for cells in rows:
            if len(cells) != len(plan.header):
                raise ValueError(f"a row of {src} has {len(cells)} fields, the header {len(plan.header)}")
            text = identity([cells[i] for i in ident])
            label = cells[target].strip()
            if is_evaluation(text, share):
                ew.writerow([_evaluation_cell(cells[i]) for i in out])
                evaluation.rows += 1
                if classification:
                    eval_labels.add(_label_key(label))
            else:
                tw.writerow(cells)
                train.rows += 1
                if classification:
                    train_labels.add(_label_key(label))
                else:
                    v = float(label)
                    lo, hi = min(lo, v), max(hi, v)
    train.sha256, train.size = _sha256(train_path)
    evaluation.sha256, evaluation.size = _sha256(evaluation_path)
    result = SplitResult(plan=plan, train=train, evaluation=evaluation)
    if classification:
        result.train_classes = _sorted_labels(train_labels)
        result.evaluation_classes = _sorted_labels(eval_labels)
        unseen = [c for c in result.evaluation_classes if c not in result.train_classes]
        if unseen:
            result.notes.append(
                "evaluation rows hold classes no training row has: " + ", ".join(map(str, unseen[:10]))
            )
    elif train.rows:
        result.train_target_range = (lo, hi)
    return result


def check_split(result: SplitResult, spec: ModelSpec, limits: Limits) -> Problem | None:
    """Whether the training rows can still train (the trainer validates them again, with the same
    rules): enough rows, a target that varies, more than one class. ``None`` when they can. Few
    evaluation rows are not a problem here: the gate refuses an automatic promotion on too few."""
    n, total = result.train.rows, result.train.rows + result.evaluation.rows
    need = min_rows(spec, limits)
    if n < need:
        return Problem(
            "too_few_rows",
            f"the platform's split keeps {n} of {total} rows for training ({result.plan.share:g} of the rows "
            f"are held out for evaluation); at least {need} are needed to train: add rows",
        )
    if result.train_target_range is not None and result.train_target_range[0] == result.train_target_range[1]:
        return Problem(
            "constant_target",
            f"target {spec.target!r} has the same value ({result.train_target_range[0]:g}) in every training "
            "row the platform's split keeps: a model cannot learn anything from it",
        )
    if result.train_classes is not None and len(result.train_classes) < 2:
        return Problem(
            "single_class",
            f"the training rows the platform's split keeps hold one class of {spec.target!r} "
            f"({', '.join(map(str, result.train_classes)) or 'none'}): a classifier needs at least two",
        )
    return None


def project_csv(src: Path, header: Sequence[str], columns: Sequence[str], dest: Path) -> Side:
    """Rewrite the validated CSV at ``src`` (whose header is ``header``) with ``columns`` only, in that
    order (the pinned evaluation set's stored form: features, then target; cells stripped, missing
    cells empty)."""
    pos = {n.strip(): i for i, n in enumerate(header)}
    idx = [pos[c] for c in columns]
    side = Side(dest)
    rows = _rows(src)
    next(rows, None)
    with open(dest, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(list(columns))
        for cells in rows:
            w.writerow([_evaluation_cell(cells[i]) for i in idx])
            side.rows += 1
    side.sha256, side.size = _sha256(dest)
    return side


def part_summary(result: SplitResult) -> dict[str, Any]:
    """What one part's split tells the merge (:func:`merge_parts_split`): both sides' rows, SHA-256 and
    size, the train classes or target range."""
    return {
        "train": result.train.summary(),
        "evaluation": result.evaluation.summary(),
        "train_classes": result.train_classes,
        "train_target_range": list(result.train_target_range) if result.train_target_range else None,
    }


def merge_parts_split(plan: SplitPlan, parts: Sequence[dict[str, Any]], evaluation: Side) -> SplitResult:
    """One :class:`SplitResult` for a dataset of parts, from each part's :func:`part_summary` (part
    order) and the parts' evaluation rows joined into ``evaluation``. The train side has no single file:
    its SHA-256 is that of the parts' train SHA-256s in part order (the rows are hashed the same way,
    row by row, whichever part holds them, so the split is the one a single file would get)."""
    train = Side(
        Path("-"),
        rows=sum(int(p["train"]["rows"]) for p in parts),
        sha256=hashlib.sha256("\n".join(str(p["train"]["sha256"]) for p in parts).encode()).hexdigest(),
        size=sum(int(p["train"]["size"]) for p in parts),
    )
    result = SplitResult(plan=plan, train=train, evaluation=evaluation)
    if all(p.get("train_target_range") is None for p in parts) and any(
        p.get("train_classes") is not None for p in parts
    ):
        keys = {_label_key(str(c)) for p in parts for c in p.get("train_classes") or []}
        result.train_classes = _sorted_labels(keys)
    else:
        ranges = [p["train_target_range"] for p in parts if p.get("train_target_range")]
        if ranges:
            result.train_target_range = (min(r[0] for r in ranges), max(r[1] for r in ranges))
    return result


def join_csv_parts(paths: Sequence[Path], dest: Path) -> Side:
    """The parts' rows (plain CSV, the same header) as one file at ``dest``: the header once; its rows,
    SHA-256 and size."""
    side = Side(dest)
    header: list[str] | None = None
    with open(dest, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        for path in paths:
            rows = _rows(path)
            first = next(rows, None)
            if first is None:
                continue
            if header is None:
                header = first
                w.writerow(first)
            elif first != header:
                raise ValueError(f"{path.name} has another header than the first part")
            for cells in rows:
                w.writerow(cells)
                side.rows += 1
    side.sha256, side.size = _sha256(dest)
    return side
