"""Tensor models: a serving signature of named inputs and outputs, and TensorFlow Serving's REST
request and answer formats over it (docs/predict.md "Tensor models", docs/contracts.md "schema.json").

A version's ``schema`` with ``features`` is a tabular model (``modelops.domain.encoding``: one 2-D
float32 input); a schema with ``inputs`` and ``outputs`` is a tensor model::

    {"task": "multiclass", "classes": null,
     "inputs":  [{"name": "image", "shape": [8, 8, 1], "dtype": "float32"},
                 {"name": "meta", "shape": [3], "dtype": "float32"}],
     "outputs": [{"name": "digit", "shape": [10], "dtype": "float32"}]}

Shapes leave out the batch dimension; every other dimension is fixed (convert refuses a dynamic one).

A request (:func:`parse_request`) is TF Serving's row format, ``{"instances": [row, ...]}`` (a row is
the input's nested list for a one-input model, or an object keyed by input name), or its columnar
format, ``{"inputs": value}`` (one input: its nested list with the batch first) or
``{"inputs": {name: value, ...}}``. Every value is checked against its input's shape and dtype
before the model runs; the first problem is named with its place (``instances[3].meta[1]``,
``inputs.image[0][7]``). :func:`predictions` shapes the answer as TF Serving does: ``predictions``
(row format: per row, the output's list, or an object keyed by output name) or ``outputs``
(columnar: the output's list, or an object keyed by output name).

A classifier's ``classes`` (task ``binary`` or ``multiclass``) name the scores of its **first output**
(``outputs[0]``; convert lists outputs by name): for ``multiclass`` its last dimension is
``len(classes)``, for ``binary`` (two classes) 1 (a sigmoid: P(``classes[1]``)) or 2.
:func:`classes_problem` says why classes do not fit (convert refuses such a model), :func:`labels`
gives each row's label (argmax of the last axis; a sigmoid at 0.5), which the answer carries next to
TF Serving's fields. Regression, or no classes: no labels.

Pure: numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DTYPES: dict[str, type[np.generic]] = {"float32": np.float32, "int32": np.int32, "int64": np.int64}
MAX_RANK = 6
"""Dimensions per input or output, the batch left out."""
MAX_VALUES = 1 << 24
"""Values per row of one input or output (16 Mi: far above what a request body can hold)."""
MAX_NAME_CHARS = 64
SIGNATURE_KEY = "serving_default"
"""The SavedModel signature a tensor model serves (and convert converts)."""

CLASSIFICATION_TASKS = ("binary", "multiclass")
_FLOAT32_FINITE = 2.0**128 - 2.0**103  # a number under this in magnitude rounds to a finite float32
_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class SignatureError(ValueError):
    """A schema's ``inputs`` / ``outputs`` are not a usable signature."""


class TensorRequestError(ValueError):
    """A request that does not match the signature. ``code`` is the API's error code
    (``invalid_request``: the body's layout, ``invalid_instances``: a value, ``too_many_rows``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: its shape without the batch dimension, and its dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        """Values per row."""
        return math.prod(self.shape)

    def describe(self) -> str:
        return f"{self.name} {list(self.shape)} {self.dtype}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> TensorSpec:
        if not isinstance(doc, Mapping):
            raise SignatureError(f"{where} must be an object with name, shape and dtype")
        name = doc.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
            raise SignatureError(f"{where}.name must be a string of 1 to {MAX_NAME_CHARS} characters")
        shape = doc.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_RANK:
            raise SignatureError(
                f"{where} ({name!r}): shape must be a list of at most {MAX_RANK} dimensions (the batch left out)"
            )
        for k, d in enumerate(shape):
            if type(d) is not int or d < 1:
                raise SignatureError(
                    f"{where} ({name!r}): dimension {k + 1} is {d!r}; every dimension but the batch is a "
                    "fixed positive integer"
                )
        if math.prod(shape) > MAX_VALUES:
            raise SignatureError(f"{where} ({name!r}): more than {MAX_VALUES} values per row")
        dtype = doc.get("dtype", "float32")
        if dtype not in DTYPES:
            raise SignatureError(
                f"{where} ({name!r}): dtype {str(dtype)[:20]!r} is not one of {', '.join(DTYPES)}"
            )
        return cls(name, tuple(shape), str(dtype))


@dataclass(frozen=True)
class Signature:
    """A tensor model's named inputs and outputs, in the model's order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def __post_init__(self) -> None:
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            if not specs:
                raise SignatureError(f"schema.{kind} must list at least one tensor")
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise SignatureError(f"schema.{kind}: names repeat")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs]}

    def describe_inputs(self) -> str:
        return ", ".join(s.describe() for s in self.inputs)

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> Signature | None:
        """The signature of a tensor model's schema; None for a tabular one (``features``)."""
        if "inputs" not in schema:
            return None
        if "features" in schema:
            raise SignatureError(
                "a schema has features (a tabular model) or inputs (a tensor model), not both"
            )
        raw_in, raw_out = schema.get("inputs"), schema.get("outputs")
        if not isinstance(raw_in, list) or not isinstance(raw_out, list):
            raise SignatureError("schema.inputs and schema.outputs must be lists")
        return cls(
            tuple(TensorSpec.from_dict(d, f"schema.inputs[{i}]") for i, d in enumerate(raw_in)),
            tuple(TensorSpec.from_dict(d, f"schema.outputs[{i}]") for i, d in enumerate(raw_out)),
        )


@dataclass(frozen=True)
class TensorRequest:
    """A checked request: one array per input (batch first, the input's dtype), in signature order."""

    inputs: dict[str, np.ndarray]
    rows: int
    columnar: bool


# ---------------------------------------------------------------------------- requests
def parse_request(
    doc: Any, sig: Signature, max_rows: int, *, may_hold_booleans: bool = True
) -> TensorRequest:
    """A request body (parsed JSON) -> checked arrays; :class:`TensorRequestError` names the first problem.

    ``may_hold_booleans``: False when the body's text has no ``true`` or ``false`` (numpy reads
    ``[true, 2.0]`` as ``[1.0, 2.0]``, so otherwise the values are scanned for booleans)."""
    if type(doc) is not dict:
        raise _layout(
            f'the body must be a JSON object {{"instances": [...]}} or {{"inputs": ...}}, not {_json_type(doc)}'
        )
    if "instances" in doc and "inputs" in doc:
        raise _layout("give 'instances' (row format) or 'inputs' (columnar format), not both")
    extra = sorted(k for k in doc if k not in ("instances", "inputs", "signature_name"))
    if extra:
        raise _layout(f"unknown key {extra[0][:60]!r}; the body takes 'instances' or 'inputs'")
    if "instances" in doc:
        return _rows(doc["instances"], sig, max_rows, may_hold_booleans)
    if "inputs" in doc:
        return _columns(doc["inputs"], sig, max_rows, may_hold_booleans)
    raise _layout("'instances' (row format) or 'inputs' (columnar format) is missing")


def _rows(instances: Any, sig: Signature, max_rows: int, bools: bool) -> TensorRequest:
    if type(instances) is not list:
        raise _layout(f"'instances' must be a list of rows, not {_json_type(instances)}")
    n = len(instances)
    if n == 0:
        raise _layout("'instances' is empty; send at least one row")
    if n > max_rows:
        raise TensorRequestError("too_many_rows", f"{n} rows; at most {max_rows} per request")
    named = type(instances[0]) is dict
    if not named and len(sig.inputs) > 1:
        raise _value(
            f"instances[0]: the model takes {len(sig.inputs)} named inputs ({sig.describe_inputs()}); "
            "send objects keyed by input name"
        )
    out: dict[str, np.ndarray] = {}
    if not named:
        spec = sig.inputs[0]
        out[spec.name] = _array(instances, spec, (n, *spec.shape), ("instances", ""), bools)
        return TensorRequest(out, n, False)
    known = set(sig.input_names)
    for i, row in enumerate(instances):
        if type(row) is not dict:
            raise _value(
                f"instances[{i}]: expected an object keyed by input name like instances[0], not {_json_type(row)}"
            )
        if len(row) != len(known) or any(k not in known for k in row):
            raise _value(_keys_problem(f"instances[{i}]", row, sig))
    for spec in sig.inputs:
        column = [row[spec.name] for row in instances]
        out[spec.name] = _array(column, spec, (n, *spec.shape), ("instances", f".{spec.name}"), bools)
    return TensorRequest(out, n, False)


def _columns(inputs: Any, sig: Signature, max_rows: int, bools: bool) -> TensorRequest:
    if type(inputs) is not dict:
        if len(sig.inputs) > 1:
            raise _layout(
                f"'inputs' must be an object keyed by input name ({sig.describe_inputs()}), not {_json_type(inputs)}"
            )
        inputs = {sig.inputs[0].name: inputs}
    elif len(inputs) != len(sig.inputs) or any(k not in sig.input_names for k in inputs):
        raise _value(_keys_problem("inputs", inputs, sig))
    out: dict[str, np.ndarray] = {}
    rows: int | None = None
    first = ""
    for spec in sig.inputs:
        value = inputs[spec.name]
        where = f"inputs.{spec.name}"
        if type(value) is not list:
            raise _value(
                f"{where} is {_json_type(value)}; expected a list of rows, each of shape {list(spec.shape)}"
            )
        n = len(value)
        if n == 0:
            raise _value(f"{where} is empty; send at least one row")
        if n > max_rows:
            raise TensorRequestError("too_many_rows", f"{where} has {n} rows; at most {max_rows} per request")
        if rows is None:
            rows, first = n, where
        elif n != rows:
            raise _value(
                f"{where} has {n} rows and {first} has {rows}; every input needs the same number of rows"
            )
        out[spec.name] = _array(value, spec, (n, *spec.shape), (where, ""), bools)
    assert rows is not None
    return TensorRequest(out, rows, True)


def _keys_problem(where: str, given: Mapping[str, Any], sig: Signature) -> str:
    for name in sig.input_names:
        if name not in given:
            return f"{where}: missing input {name!r}; the model takes {sig.describe_inputs()}"
    unknown = next(k for k in given if k not in sig.input_names)
    return f"{where}: unknown input {str(unknown)[:60]!r}; the model takes {sig.describe_inputs()}"


def _array(
    values: list[Any], spec: TensorSpec, shape: tuple[int, ...], place: tuple[str, str], bools: bool
) -> np.ndarray:
    """``values`` (a list of rows) as an array of ``shape`` and the input's dtype, or the first problem.

    One numpy conversion for well-formed values; the walk that names a problem runs only when it
    fails (ragged lists, strings, booleans, nulls, floats for an integer input, out of range).
    ``place`` names row ``i`` as ``f"{place[0]}[{i}]{place[1]}"``."""
    try:
        arr = np.array(values)
    except (ValueError, TypeError, OverflowError):
        arr = None
    if arr is not None and arr.shape == shape and arr.dtype.kind != "b" and not (bools and _any_bool(values)):
        if spec.dtype == "float32" and arr.dtype.kind in "fi":
            with np.errstate(over="ignore", invalid="ignore"):
                x = arr.astype(np.float32)
            if np.isfinite(x).all():
                return x
        elif spec.dtype != "float32" and arr.dtype.kind == "i":
            lo, hi = _RANGES[spec.dtype]
            if arr.size == 0 or (int(arr.min()) >= lo and int(arr.max()) <= hi):
                return arr.astype(DTYPES[spec.dtype])
    for i, row in enumerate(values):
        _walk(row, spec.shape, spec, f"{place[0]}[{i}]{place[1]}")
    if spec.dtype == "float32":  # every value a number in range after all (an integer beyond int64)
        return np.array(values, dtype=np.float32)
    raise _value(
        f"{place[0]}[0]{place[1]}: the values of input {spec.name!r} could not be read as {spec.dtype}"
    )


def _any_bool(v: Any) -> bool:
    if type(v) is list:
        return any(_any_bool(item) for item in v)
    return type(v) is bool


def _walk(v: Any, shape: tuple[int, ...], spec: TensorSpec, where: str) -> None:
    if not shape:
        problem = _scalar_problem(v, spec.dtype)
        if problem:
            raise _value(f"{where} {problem}")
        return
    if type(v) is not list:
        raise _value(
            f"{where} is {_json_type(v)}; expected a list of {shape[0]} (input {spec.name!r} has shape "
            f"{list(spec.shape)} per row)"
        )
    if len(v) != shape[0]:
        raise _value(
            f"{where} has {len(v)} values; expected {shape[0]} (input {spec.name!r} has shape {list(spec.shape)} per row)"
        )
    for k, item in enumerate(v):
        _walk(item, shape[1:], spec, f"{where}[{k}]")


def _scalar_problem(v: Any, dtype: str) -> str | None:
    t = type(v)
    if dtype == "float32":
        if t is float:
            if v != v:
                return "is NaN; expected a finite number (float32)"
            return None if -_FLOAT32_FINITE < v < _FLOAT32_FINITE else "is out of the float32 range (±3.4e38)"
        if t is int:
            return None if -_FLOAT32_FINITE < v < _FLOAT32_FINITE else "is out of the float32 range (±3.4e38)"
        if t is list:
            return "is a list; expected a number (float32): the list is nested deeper than the input's shape"
        return f"is {_json_type(v)}; expected a number (float32)"
    if t is int:
        lo, hi = _RANGES[dtype]
        return None if lo <= v <= hi else f"is out of the {dtype} range ({lo} to {hi})"
    if t is float:
        return f"is a number with a fraction or exponent ({v!r}); the input takes {dtype} integers"
    if t is list:
        return f"is a list; expected an integer ({dtype}): the list is nested deeper than the input's shape"
    return f"is {_json_type(v)}; expected an integer ({dtype})"


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    return "an object"


def _layout(message: str) -> TensorRequestError:
    return TensorRequestError("invalid_request", message)


def _value(message: str) -> TensorRequestError:
    return TensorRequestError("invalid_instances", message)


# ---------------------------------------------------------------------------- answers
def predictions(sig: Signature, outputs: Mapping[str, np.ndarray], columnar: bool) -> tuple[str, Any]:
    """``(key, value)`` of the answer, as TF Serving writes it: row format ``"predictions"`` (one
    output: its rows; several: per row an object keyed by output name), columnar ``"outputs"`` (one
    output: its rows; several: an object keyed by output name). Arrays stay numpy (orjson writes them)."""
    if len(sig.outputs) == 1:
        y = np.ascontiguousarray(outputs[sig.outputs[0].name])
        return ("outputs" if columnar else "predictions"), y
    arrays = {s.name: np.ascontiguousarray(outputs[s.name]) for s in sig.outputs}
    if columnar:
        return "outputs", arrays
    n = len(next(iter(arrays.values())))
    return "predictions", [{name: a[i] for name, a in arrays.items()} for i in range(n)]


def answer_values_per_row(sig: Signature) -> int:
    """Numbers one row of the answer holds (every output's values)."""
    return sum(s.size for s in sig.outputs)


# ---------------------------------------------------------------------------- classification labels
def classes_problem(task: str, classes: Sequence[Any] | None, output: TensorSpec) -> str | None:
    """Why ``classes`` cannot name the scores of ``output`` (a classifier's first output), or None when
    they can, or when there is nothing to label (a regression task, no classes)."""
    if task not in CLASSIFICATION_TASKS or classes is None:
        return None
    n = len(classes)
    last = output.shape[-1] if output.shape else 1
    count_ok = n == 2 if task == "binary" else n >= 2
    shape_ok = last in (1, 2) if task == "binary" else last == n
    scalars = all(isinstance(c, str | int | float) and not isinstance(c, bool) for c in classes)
    distinct = len({str(c) for c in classes}) == n
    if count_ok and shape_ok and scalars and distinct:
        return None  # the common case (predict asks per request): no message built
    shown = ", ".join(repr(c) for c in list(classes)[:10]) + (", ..." if n > 10 else "")
    where = f"the model's first output {output.name!r} has shape {list(output.shape)} per row"
    if not scalars:
        return f"the classes must be strings or numbers; they are [{shown}]"
    if not distinct:
        return f"the classes repeat: [{shown}]"
    if task == "binary" and n != 2:
        return f"a binary model has 2 classes; {n} given ([{shown}])"
    if task == "binary":
        return (
            f"{where}: a binary model's last dimension is 1 (a sigmoid: P({classes[1]!r})) or 2 (one "
            f"score per class), not {last}"
        )
    if n < 2:
        return f"a multiclass model has at least 2 classes; {n} given ([{shown}])"
    return f"{where}: its last dimension is {last}; the {n} classes ([{shown}]) need {n}, one score per class"


def label_output(sig: Signature, task: str, classes: Sequence[Any] | None) -> TensorSpec | None:
    """The output whose rows :func:`labels` names (the first), or None when no labels apply: a
    regression task, no classes, or classes that do not fit it (:func:`classes_problem`; convert
    refuses such a model, a version written before is answered without labels)."""
    if task not in CLASSIFICATION_TASKS or classes is None:
        return None
    first = sig.outputs[0]
    return first if classes_problem(task, classes, first) is None else None


def labels_per_row(output: TensorSpec) -> int:
    """Labels one row of the answer holds: one per score vector (the output's shape without its last axis)."""
    return math.prod(output.shape[:-1]) if output.shape else 1


def labels(
    sig: Signature, task: str, classes: Sequence[Any] | None, outputs: Mapping[str, np.ndarray]
) -> list[Any] | None:
    """Per row, the class of the first output's scores (the argmax of its last axis; for a single
    sigmoid ``classes[1]`` at 0.5 or more, else ``classes[0]``), nested like the output without its
    last axis (one label per row for an output of shape ``[k]``); None when no labels apply
    (:func:`label_output`)."""
    spec = label_output(sig, task, classes)
    if spec is None or classes is None:
        return None
    y = np.asarray(outputs[spec.name])
    y = y.reshape(len(y), *spec.shape)
    if not spec.shape or spec.shape[-1] == 1:  # a sigmoid: P(classes[1])
        index = ((y >= 0.5) if not spec.shape else (y[..., 0] >= 0.5)).astype(np.int64)
    else:
        index = y.argmax(axis=-1)
    table = tuple(classes)
    if index.ndim == 1:
        return [table[i] for i in index.tolist()]
    named: list[Any] = np.array(table, dtype=object)[index].tolist()
    return named
