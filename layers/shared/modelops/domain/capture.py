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
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

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
_LE_F32 = np.dtype("<f4")
FORMAT_REASONS = ("not_json", "missing_field", "non_numeric", "bad_array", "unsupported_format")
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


def decode_line(line: bytes | str) -> CaptureRecord:
    """Decode one capture line; raise ``CaptureFormatError`` on anything malformed."""
    model, version, rid, ts, n, f, k, xs, ys = read_header(line)
    xb, yb = read_arrays(xs, ys, n, f, k)
    x = np.frombuffer(xb, dtype=_LE_F32).reshape(n, f)
    y = np.frombuffer(yb, dtype=_LE_F32).reshape(n, k)
    return CaptureRecord(model, version, rid, float(ts), x, y)


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
