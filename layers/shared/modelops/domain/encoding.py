"""A model's input schema, and the one encoding of raw cells into the model's input matrix.

A served model takes one float32 matrix ``(rows, len(features))`` in the schema's feature order.
A numeric feature's column holds the number itself. A categorical feature's column holds the index
of its value in the feature's vocabulary (``0 .. len(vocabulary) - 1``), or ``len(vocabulary)``
(the out-of-vocabulary bucket, OOV) for a value the vocabulary does not hold or a missing one.
Strings never enter the LiteRT graph (string lookups are not LiteRT builtin ops): the trainer's graph
turns each index column into a one-hot block with builtin ops, and everything outside the graph
(predict, the gate, convert's parity rows, captures, the monitor) works on this index matrix.

``schema.json`` (the trainer writes it, convert copies it into the manifest as ``schema``)::

    {"task": "binary", "target": "churned", "classes": [0, 1],
     "features": [
        {"name": "age", "type": "numeric", "dtype": "float32"},
        {"name": "plan", "type": "categorical", "dtype": "string",
         "vocabulary": ["basic", "pro", "team"]}
     ]}

A feature entry without ``type`` (every version before categorical features) is numeric. Captures
carry the same index matrix, so the monitor sees a categorical column as indices and compares their
frequencies (``len(vocabulary) + 1`` buckets) with the baseline's.

Kept Python 3.10 compatible (the AWS TensorFlow training image runs 3.10); numpy only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # numpy is imported by encode() only: the spec imports this module, and the
    import numpy as np  # gate's rules and the spec stay numpy-free (tests/unit/test_gate.py)

Kind = Literal["numeric", "categorical"]
KINDS: tuple[str, ...] = ("numeric", "categorical")

MISSING_TOKENS = frozenset({"", "na", "n/a", "null"})
"""Cell texts (stripped, case-insensitive) that mean "missing" (numeric and categorical alike)."""

DEFAULT_MAX_CATEGORIES = 32
"""Vocabulary size when the spec says nothing: the most frequent values of the training rows."""
MAX_CATEGORIES = 1000
"""The largest vocabulary a spec may ask for."""
NEW_CATEGORY_THRESHOLD = 0.05
"""Default largest rise of a categorical feature's new-category (OOV) rate over its baseline's, as an
absolute share of rows (0.05: five more rows in a hundred hold a value the model never saw); the
monitor's (``modelops.domain.drift``), and a model's settings may change it."""
MAX_CATEGORY_CHARS = 200
"""Longest category value (after stripping) a dataset may hold and predict accepts."""


class SchemaError(ValueError):
    """A schema document that cannot describe a model's input (the message says what is wrong)."""


def category(value: str) -> str | None:
    """A cell's category: the stripped text, or None when it means missing (empty, ``NA``, ...)."""
    text = value.strip()
    return None if text.lower() in MISSING_TOKENS else text


def learn_vocabulary(values: Iterable[str | None], max_size: int = DEFAULT_MAX_CATEGORIES) -> tuple[str, ...]:
    """The ``max_size`` most frequent non-missing values, most frequent first (ties: by value), so the
    same rows always give the same vocabulary."""
    counts = Counter(v for v in values if v is not None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(v for v, _ in ranked[:max_size])


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind = "numeric"
    vocabulary: tuple[str, ...] = ()

    @property
    def categorical(self) -> bool:
        return self.kind == "categorical"

    @property
    def oov_index(self) -> int:
        """The index of the out-of-vocabulary bucket (also where a missing category goes)."""
        return len(self.vocabulary)

    @property
    def buckets(self) -> int:
        """Distinct index values of a categorical column: the vocabulary plus OOV."""
        return len(self.vocabulary) + 1

    def to_dict(self) -> dict[str, Any]:
        if self.categorical:
            return {
                "name": self.name,
                "type": "categorical",
                "dtype": "string",
                "vocabulary": list(self.vocabulary),
            }
        return {"name": self.name, "type": "numeric", "dtype": "float32"}


@dataclass(frozen=True)
class InputSchema:
    """The features of a model's input, in order, with the lookup tables of its categorical ones."""

    features: tuple[Feature, ...]
    _lookup: dict[str, dict[str, int]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if not names:
            raise SchemaError("a schema needs at least one feature")
        if len(set(names)) != len(names):
            raise SchemaError("feature names repeat")
        for f in self.features:
            if f.categorical:
                if len(set(f.vocabulary)) != len(f.vocabulary):
                    raise SchemaError(f"feature {f.name!r}: the vocabulary repeats a value")
                self._lookup[f.name] = {v: i for i, v in enumerate(f.vocabulary)}

    # ------------------------------------------------------------------ documents
    @classmethod
    def from_dict(cls, schema: Mapping[str, Any]) -> InputSchema:
        """Parse ``schema["features"]`` (entries may be names, as the first versions wrote them)."""
        raw = schema.get("features")
        if not isinstance(raw, list) or not raw:
            raise SchemaError("schema.features must be a non-empty list")
        feats: list[Feature] = []
        for item in raw:
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, Mapping):
                raise SchemaError("schema.features entries must be objects with a name")
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise SchemaError("schema.features has an entry without a name")
            kind = item.get("type", "numeric")
            if kind not in KINDS:
                raise SchemaError(f"feature {name!r}: unknown type {str(kind)[:40]!r}")
            vocab: tuple[str, ...] = ()
            if kind == "categorical":
                v = item.get("vocabulary")
                if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                    raise SchemaError(f"feature {name!r}: a categorical feature needs a list of strings")
                vocab = tuple(v)
            feats.append(Feature(name, kind, vocab))
        return cls(tuple(feats))

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.features]

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def categorical(self) -> bool:
        """Does any feature take categories?"""
        return bool(self._lookup)

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def lookup(self, name: str) -> Mapping[str, int]:
        """Categorical feature ``name``'s table: value (stripped) -> index; an absent value is OOV
        (``len(table)``). KeyError for a numeric or unknown feature."""
        return self._lookup[name]

    def index_of(self, name: str, value: str) -> int:
        """The column value of category ``value`` (stripped; OOV when unknown or missing)."""
        table = self._lookup[name]
        cat = category(value)
        return table.get(cat, len(table)) if cat is not None else len(table)

    # ------------------------------------------------------------------ encoding
    def encode(self, rows: Sequence[Sequence[Any]]) -> tuple[np.ndarray, dict[str, int]]:
        """Rows of raw cells in schema order -> (the model's input matrix, OOV count per categorical
        feature). A numeric cell is a number or a numeric text (missing: NaN); a categorical cell is
        a text (missing or unknown: the OOV index). Callers validate first; this only converts."""
        import numpy as np

        n, width = len(rows), len(self.features)
        x = np.empty((n, width), dtype=np.float32)
        oov: dict[str, int] = {}
        for j, f in enumerate(self.features):
            if f.categorical:
                table = self._lookup[f.name]
                miss = len(table)
                count = 0
                for i, row in enumerate(rows):
                    cell = row[j]
                    cat = category(cell) if isinstance(cell, str) else None
                    k = table.get(cat, miss) if cat is not None else miss
                    count += k == miss
                    x[i, j] = k
                oov[f.name] = count
            else:
                for i, row in enumerate(rows):
                    x[i, j] = _number(row[j])
        return x, oov


def _number(cell: Any) -> float:
    if cell is None:
        return float("nan")
    if isinstance(cell, str):
        text = cell.strip()
        if text.lower() in MISSING_TOKENS:
            return float("nan")
        return float(text)
    return float(cell)
