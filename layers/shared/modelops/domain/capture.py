"""Captured predict traffic: one JSON line per predict invocation, written to Firehose.

Firehose concatenates records into objects under ``captures/YYYY/MM/DD/HH/`` in the data bucket.
Each line (format ``v`` 1)::

    {"v": 1, "model": "demo", "version": 3, "request_id": "…", "ts": 1732740000.123,
     "n": rows, "f": features, "k": outputs per row,
     "x": "<base64 of float32 little-endian, rows x features, row-major>",
     "y": "<base64 of float32 little-endian, rows x k>"}

Binary floats inside JSON keep the line small and decode at memory speed (``np.frombuffer``):
decoding 20 floats as JSON text costs ~15x more (see docs/performance.md).
Ground truth rows join on (request_id, row index).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

FORMAT_VERSION = 1
_LE_F32 = np.dtype("<f4")


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
    pass


def decode_line(line: bytes | str) -> CaptureRecord:
    """Decode one capture line; raise ``CaptureFormatError`` on anything malformed."""
    try:
        doc = json.loads(line)
        if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
            raise CaptureFormatError("not a v1 capture record")
        n, f, k = int(doc["n"]), int(doc["f"]), int(doc["k"])
        if n < 1 or f < 1 or k < 1:
            raise CaptureFormatError("empty record")
        x = np.frombuffer(base64.b64decode(doc["x"], validate=True), dtype=_LE_F32)
        y = np.frombuffer(base64.b64decode(doc["y"], validate=True), dtype=_LE_F32)
        if x.size != n * f or y.size != n * k:
            raise CaptureFormatError("array sizes do not match n/f/k")
        version = doc["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise CaptureFormatError("version is not an integer")
        return CaptureRecord(
            str(doc["model"]),
            version,
            str(doc["request_id"]),
            float(doc["ts"]),
            x.reshape(n, f),
            y.reshape(n, k),
        )
    except CaptureFormatError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CaptureFormatError(str(exc)) from exc


def iter_lines(data: bytes) -> Iterator[bytes]:
    for line in data.split(b"\n"):
        if line.strip():
            yield line
