"""Captured predict traffic: one JSON line per predict invocation, written to Firehose.

Firehose concatenates records into objects under ``captures/YYYY/MM/DD/HH/`` in the data bucket.
Each line (format ``v`` 1)::

    {"v": 1, "model": "demo", "version": 3, "request_id": "…", "ts": 1732740000.123,
     "n": rows, "f": features, "k": outputs per row,
     "x": "<base64 of float32 little-endian, rows x features, row-major>",
     "y": "<base64 of float32 little-endian, rows x k>"}

Binary floats inside JSON keep the line small and decode at memory speed (``np.frombuffer``):
decoding 20 floats as JSON text costs ~15x more (measured by benchmarks/bench_monitor.py).
Ground truth rows join on (request_id, row index): ``labels/{model}/*.jsonl`` lines
``{"request_id": "...", "row": 0, "label": 1.5}`` (:func:`decode_label`).

One validation of the format serves every reader: :func:`read_header` (JSON, field presence and
types) and :func:`read_arrays` (strict base64, sizes matching n/f/k). :func:`decode_line` is the two
in a row; the monitor calls them separately, so a line outside its window is never base64-decoded and
its own checks (the version's feature count) come between them. A rejected line raises
:class:`CaptureFormatError` whose ``reason`` names what was wrong (:data:`FORMAT_REASONS`).

Tensor models (format ``v`` 2)
------------------------------
A tensor model's request (``modelops/domain/signature.py``: several named inputs and outputs of any
fixed shape and dtype) is captured as one line of format 2 (:func:`encode_tensor_record`)::

    {"v": 2, "model": "digits", "version": 1, "request_id": "…", "ts": 1732740000.123, "n": rows,
     "inputs":  [{"name": "image", "dtype": "float32", "shape": [8, 8, 1], "data": "<base64>"}, ...],
     "outputs": [{"name": "digit", "dtype": "float32", "shape": [10], "data": "<base64>"}, ...]}

``shape`` leaves the rows out; ``data`` is the array (rows x shape, row-major) in little-endian
``dtype`` (``float32``, ``int32`` or ``int64``), so its size is ``n * prod(shape) * itemsize``.
:func:`decode_tensor_line` checks all of it (names unique strings, shapes of positive integers, at
most ``MAX_TENSOR_RANK`` dimensions, strict base64 of exactly that size); an unknown dtype is
reason ``unknown_dtype``. :func:`read_header` meets a format-2 line as ``unsupported_format``, raised
as :class:`TensorLine` (a ``CaptureFormatError`` carrying the parsed document), so a v1 reader counts
it as before and the monitor decodes it with :func:`tensor_record_from_doc` without parsing it twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

try:  # orjson decodes a capture line ~3x faster than json; the format is the same either way
    import orjson

    _loads: Callable[[bytes | str], Any] = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (
        orjson.JSONDecodeError,
        ValueError,
        TypeError,
        RecursionError,
    )
except ImportError:  # pragma: no cover - the layer may ship without it
    _loads = json.loads
    _JSON_ERRORS = (ValueError, TypeError, RecursionError)

FORMAT_VERSION = 1
TENSOR_FORMAT_VERSION = 2
_LE_F32 = np.dtype("<f4")
TENSOR_DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
}
"""The dtypes a format-2 array may have (the signature's), little-endian."""
MAX_TENSOR_RANK = 6
MAX_TENSORS = 64
"""Inputs or outputs per format-2 line at most."""
FORMAT_REASONS = (
    "not_json",
    "missing_field",
    "non_numeric",
    "bad_array",
    "unsupported_format",
    "unknown_dtype",
)
"""Why a line is not a capture record (``CaptureFormatError.reason``)."""

Header = tuple[str, int, str, float, int, int, int, Any, Any]
"""``(model, version, request_id, ts, n, f, k, x base64, y base64)`` of a line, types checked."""


@dataclass(frozen=True)
class CaptureRecord:
    model: str
    version: int
    request_id: str
    ts: float
    x: np.ndarray  # (n, f) float32
    y: np.ndarray  # (n, k) float32


def encode_record(
    model: str, version: int, request_id: str, ts: float, x: np.ndarray, y: np.ndarray
) -> bytes:
    """One capture line (newline-terminated) for a batch of rows and their outputs."""
    x = np.ascontiguousarray(x, dtype=_LE_F32)
    y = np.ascontiguousarray(y, dtype=_LE_F32).reshape(x.shape[0], -1)
    doc = {
        "v": FORMAT_VERSION,
        "model": model,
        "version": int(version),
        "request_id": request_id,
        "ts": round(float(ts), 3),
        "n": int(x.shape[0]),
        "f": int(x.shape[1]),
        "k": int(y.shape[1]),
        "x": base64.b64encode(x.tobytes()).decode("ascii"),
        "y": base64.b64encode(y.tobytes()).decode("ascii"),
    }
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


class CaptureFormatError(ValueError):
    """A line that is not a v1 capture record; ``reason`` is one of :data:`FORMAT_REASONS`."""

    def __init__(self, message: str, reason: str = "not_json") -> None:
        super().__init__(message)
        self.reason = reason


class TensorLine(CaptureFormatError):
    """:func:`read_header` met a format-2 (tensor) line: ``unsupported_format`` for a v1 reader; ``doc``
    is the parsed line, for :func:`tensor_record_from_doc`."""

    def __init__(self, doc: dict[str, Any]) -> None:
        super().__init__("a v2 (tensor) capture record", "unsupported_format")
        self.doc = doc


def read_header(line: bytes | str, _loads: Callable[[bytes | str], Any] = _loads) -> Header:
    """Parse one line and check its fields: ``v`` 1; ``version``, ``n``, ``f``, ``k`` JSON integers;
    ``ts`` a JSON number; ``model`` and ``request_id`` strings. The arrays are not decoded."""
    try:
        d = _loads(line)
    except _JSON_ERRORS as exc:
        raise CaptureFormatError(f"not JSON: {exc}", "not_json") from None
    try:
        model, version, ts = d["model"], d["version"], d["ts"]
        n, f, k, xs, ys, rid = d["n"], d["f"], d["k"], d["x"], d["y"], d["request_id"]
        fmt = d["v"]
    except (KeyError, TypeError) as exc:  # TypeError: valid JSON but not an object
        if isinstance(d, dict):
            if d.get("v") == TENSOR_FORMAT_VERSION:
                raise TensorLine(d) from None
            raise CaptureFormatError(f"missing field {exc}", "missing_field") from None
        raise CaptureFormatError("not a JSON object", "not_json") from None
    if fmt != FORMAT_VERSION:
        raise CaptureFormatError("not a v1 capture record", "unsupported_format")
    if (
        type(version) is not int
        or type(n) is not int
        or type(f) is not int
        or type(k) is not int
        or type(ts) not in (float, int)
    ):
        raise CaptureFormatError("version, n, f, k must be integers and ts a number", "non_numeric")
    if type(model) is not str or type(rid) is not str:
        raise CaptureFormatError("model and request_id must be strings", "missing_field")
    return model, version, rid, ts, n, f, k, xs, ys


def read_arrays(
    xs: Any, ys: Any, n: int, f: int, k: int, _a2b: Callable[..., bytes] = binascii.a2b_base64
) -> tuple[bytes, bytes]:
    """The raw float32 bytes of ``x`` (n x f) and ``y`` (n x k), from strict base64."""
    if n < 1 or f < 1 or k < 1:
        raise CaptureFormatError("empty record", "bad_array")
    try:
        xb = _a2b(xs, strict_mode=True)
        yb = _a2b(ys, strict_mode=True)
    except (binascii.Error, TypeError, ValueError):
        raise CaptureFormatError("x and y must be strict base64", "non_numeric") from None
    if len(xb) != 4 * n * f or len(yb) != 4 * n * k:
        raise CaptureFormatError("array sizes do not match n/f/k", "bad_array")
    return xb, yb


@dataclass(frozen=True)
class Block:
    """The columns of a run of v1 lines (:func:`read_block`), in the lines' order; ``x`` and ``y`` are
    each line's decoded float32 bytes, their sizes checked against ``n``, ``f`` and ``k``."""

    models: list[str]
    versions: list[int]
    ts: np.ndarray  # float64
    n: np.ndarray  # int64
    f: np.ndarray
    k: np.ndarray
    x: list[bytes]
    y: list[bytes]
    lines: list[Any]
    """The decoded lines (for what is read of a few only: :meth:`request_id`)."""

    def request_id(self, i: int) -> str:
        return str(self.lines[i].request_id)


_block_decoder: Any = None
_BLOCK_MAX_DIM = 1 << 24


def _decoder() -> Any:
    """msgspec's decoder of a v1 line (built on first use: predict, which only encodes, never imports
    msgspec); False where msgspec is not installed."""
    global _block_decoder
    if _block_decoder is None:
        try:
            import msgspec
        except ImportError:  # pragma: no cover - the layer ships it
            _block_decoder = False
            return False

        class Line(msgspec.Struct, gc=False):
            v: Literal[1]  # msgspec refuses true and 1.0 here: those go line by line
            model: str
            version: int
            request_id: str
            ts: int | float
            n: int
            f: int
            k: int
            x: bytes
            y: bytes

        _block_decoder = (msgspec.json.Decoder(Line), msgspec.DecodeError)
    return _block_decoder


def read_block(block: bytes | memoryview) -> Block | None:
    """Every line of ``block`` (lines joined by ``\n``, no blank line) as columns, when every line is
    a v1 record that :func:`read_header` and :func:`read_arrays` accept; else None, and the caller
    reads the lines one by one, which names what is wrong with each. The monitor's hot path: one call
    decodes thousands of lines (msgspec's typed decoder: JSON, field types and base64 in C, about 2.5x
    faster than a call per line), where a line costs less than the checks around it.

    What this accepts is a subset of what the line-by-line path accepts, with the same values (tests/
    unit/test_capture_block.py checks it against :func:`decode_line` on corrupted lines):

    * Framing. msgspec reads whitespace-separated documents, so a document could span lines or two
      share one. Here every line starts with ``{`` and ends with ``}``, so every line break is
      ``}\n{``: inside a document a ``}`` can only be followed by ``,``, ``]`` or ``}`` (and a JSON
      string cannot hold a raw newline), so each break is between two documents; then as many
      documents as lines means exactly one per line.
    * Fields. msgspec's ``int`` refuses ``true`` and ``1.0`` (as ``type(x) is int`` does); ``ts``
      must be a finite JSON float (an integer ``ts`` goes the line-by-line way, which keeps its type);
      msgspec's base64 accepts a subset of ``binascii``'s strict mode, with the same bytes.
    """
    dec = _decoder()
    if not dec or not block:
        return None
    decoder, decode_error = dec
    raw = np.frombuffer(block, dtype=np.uint8)
    breaks = np.flatnonzero(raw == 10)
    count = breaks.size + 1
    if (
        raw[0] != 123
        or raw[-1] != 125
        or (breaks.size and (np.any(raw[breaks - 1] != 125) or np.any(raw[breaks + 1] != 123)))
    ):
        return None
    try:
        lines = decoder.decode_lines(block)
    except decode_error:
        return None
    if len(lines) != count:
        return None
    ts_values = [r.ts for r in lines]  # comprehensions: faster than map(attrgetter) on 3.12
    if set(map(type, ts_values)) != {float}:
        return None
    ts = np.array(ts_values, dtype=np.float64)
    try:
        n = np.array([r.n for r in lines], dtype=np.int64)
        f = np.array([r.f for r in lines], dtype=np.int64)
        k = np.array([r.k for r in lines], dtype=np.int64)
    except OverflowError:  # past int64: the line-by-line path names it
        return None
    if (
        not np.isfinite(ts).all()
        or min(n.min(), f.min(), k.min()) < 1
        or max(n.max(), f.max(), k.max()) > _BLOCK_MAX_DIM  # keeps 4 * n * f within int64
    ):
        return None
    x, y = [r.x for r in lines], [r.y for r in lines]
    if not (
        np.array_equal(np.fromiter(map(len, x), np.int64, count), 4 * n * f)
        and np.array_equal(np.fromiter(map(len, y), np.int64, count), 4 * n * k)
    ):
        return None
    return Block(
        [r.model for r in lines],
        [r.version for r in lines],
        ts,
        n,
        f,
        k,
        x,
        y,
        lines,
    )


def decode_line(line: bytes | str) -> CaptureRecord:
    """Decode one capture line; raise ``CaptureFormatError`` on anything malformed."""
    model, version, rid, ts, n, f, k, xs, ys = read_header(line)
    xb, yb = read_arrays(xs, ys, n, f, k)
    x = np.frombuffer(xb, dtype=_LE_F32).reshape(n, f)
    y = np.frombuffer(yb, dtype=_LE_F32).reshape(n, k)
    return CaptureRecord(model, version, rid, float(ts), x, y)


@dataclass(frozen=True)
class TensorCaptureRecord:
    """A decoded format-2 line: every array has the rows first (``n``), in the line's order."""

    model: str
    version: int
    request_id: str
    ts: float
    n: int
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def _tensor_entry(name: str, a: np.ndarray, n: int) -> dict[str, Any]:
    dtype = next(
        (k for k, d in TENSOR_DTYPES.items() if a.dtype == d or a.dtype == d.newbyteorder("=")), None
    )
    if dtype is None:
        raise ValueError(f"{name!r}: dtype {a.dtype} is not one of {', '.join(TENSOR_DTYPES)}")
    if a.ndim < 1 or a.shape[0] != n:
        raise ValueError(f"{name!r}: shape {a.shape} does not have the {n} rows first")
    data = np.ascontiguousarray(a, dtype=TENSOR_DTYPES[dtype])
    return {
        "name": name,
        "dtype": dtype,
        "shape": [int(d) for d in a.shape[1:]],
        "data": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def encode_tensor_record(
    model: str,
    version: int,
    request_id: str,
    ts: float,
    inputs: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
) -> bytes:
    """One format-2 line (newline-terminated) of a tensor request's inputs and outputs by name (each
    an array with the rows first, float32/int32/int64). ``ValueError`` when they disagree on the rows
    or an array has another dtype."""
    if not inputs or not outputs:
        raise ValueError("a tensor capture needs at least one input and one output")
    n = int(np.asarray(next(iter(inputs.values()))).shape[0])
    doc = {
        "v": TENSOR_FORMAT_VERSION,
        "model": model,
        "version": int(version),
        "request_id": request_id,
        "ts": round(float(ts), 3),
        "n": n,
        "inputs": [_tensor_entry(k, np.asarray(v), n) for k, v in inputs.items()],
        "outputs": [_tensor_entry(k, np.asarray(v), n) for k, v in outputs.items()],
    }
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def decode_tensor_line(line: bytes | str) -> TensorCaptureRecord:
    """Decode one format-2 line; raise ``CaptureFormatError`` (with its reason) on anything malformed."""
    try:
        d = _loads(line)
    except _JSON_ERRORS as exc:
        raise CaptureFormatError(f"not JSON: {exc}", "not_json") from None
    if not isinstance(d, dict):
        raise CaptureFormatError("not a JSON object", "not_json")
    return tensor_record_from_doc(d)


def tensor_record_from_doc(d: dict[str, Any]) -> TensorCaptureRecord:
    """The record of a parsed format-2 line (:class:`TensorLine`'s ``doc``), every field checked."""
    try:
        fmt, model, version, rid, ts, n = d["v"], d["model"], d["version"], d["request_id"], d["ts"], d["n"]
        raw_in, raw_out = d["inputs"], d["outputs"]
    except KeyError as exc:
        raise CaptureFormatError(f"missing field {exc}", "missing_field") from None
    if fmt != TENSOR_FORMAT_VERSION:
        raise CaptureFormatError("not a v2 capture record", "unsupported_format")
    if type(version) is not int or type(n) is not int or type(ts) not in (float, int):
        raise CaptureFormatError("version and n must be integers and ts a number", "non_numeric")
    if type(model) is not str or type(rid) is not str:
        raise CaptureFormatError("model and request_id must be strings", "missing_field")
    if n < 1:
        raise CaptureFormatError("empty record", "bad_array")
    return TensorCaptureRecord(
        model, version, rid, float(ts), n, _tensors(raw_in, n, "inputs"), _tensors(raw_out, n, "outputs")
    )


def _tensors(raw: Any, n: int, kind: str) -> dict[str, np.ndarray]:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_TENSORS:
        raise CaptureFormatError(f"{kind} must be a list of 1 to {MAX_TENSORS} arrays", "missing_field")
    out: dict[str, np.ndarray] = {}
    for i, e in enumerate(raw):
        where = f"{kind}[{i}]"
        if not isinstance(e, dict):
            raise CaptureFormatError(f"{where} must be an object", "missing_field")
        try:
            name, dtype, shape, data = e["name"], e["dtype"], e["shape"], e["data"]
        except KeyError as exc:
            raise CaptureFormatError(f"{where}: missing field {exc}", "missing_field") from None
        if type(name) is not str or not name or name in out:
            raise CaptureFormatError(f"{where}: name must be a unique non-empty string", "missing_field")
        if type(dtype) is not str or dtype not in TENSOR_DTYPES:
            raise CaptureFormatError(f"{where}: unknown dtype {str(dtype)[:20]!r}", "unknown_dtype")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_TENSOR_RANK
            or not all(type(s) is int and s >= 1 for s in shape)
        ):
            raise CaptureFormatError(
                f"{where}: shape must be a list of at most {MAX_TENSOR_RANK} positive integers", "bad_array"
            )
        dt = TENSOR_DTYPES[dtype]
        try:
            b = binascii.a2b_base64(data, strict_mode=True)
        except (binascii.Error, TypeError, ValueError):
            raise CaptureFormatError(f"{where}: data must be strict base64", "non_numeric") from None
        if len(b) != n * math.prod(shape) * dt.itemsize:
            raise CaptureFormatError(
                f"{where}: {len(b)} bytes, not n x shape x {dtype} ({n} x {shape})", "bad_array"
            )
        out[name] = np.frombuffer(b, dtype=dt).reshape(n, *shape)
    return out


def iter_lines(data: bytes) -> Iterator[bytes]:
    for line in data.split(b"\n"):
        if line.strip():
            yield line


def split_request_id(rid: str) -> tuple[str, int]:
    """``"abc#200"`` -> ("abc", 200): the part of a request split over several lines
    (``capture_sink.encode_lines``) that starts at row 200; any other id -> (rid, 0)."""
    base, sep, start = rid.rpartition("#")
    if sep and base and start.isdigit():
        return base, int(start)
    return rid, 0


def decode_label(line: bytes | str) -> tuple[str, int, Any]:
    """``(request_id, row, label)`` of one label line; a label is a finite number or a class name.
    Anything else raises ``CaptureFormatError``."""
    try:
        doc = json.loads(line)
        rid, row, lab = doc["request_id"], doc["row"], doc["label"]
        if type(rid) is not str or type(row) is not int or row < 0 or lab is None:
            raise TypeError("bad field types")
        if isinstance(lab, bool) or not isinstance(lab, int | float | str):
            raise TypeError("a label is a number or a class name")
        if isinstance(lab, int | float) and not math.isfinite(float(lab)):
            raise TypeError("non-finite label")
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise CaptureFormatError(f"bad label line: {exc}") from None
    return rid, row, lab
