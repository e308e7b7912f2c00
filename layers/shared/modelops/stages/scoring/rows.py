"""A chunk of a scoring input's CSV rows -> the model's input matrix and the rejected rows; the model's
answers -> the part's CSV lines (docs/scoring.md "Outputs").

Rows are read as predict reads them (``modelops.stages.predict.parse``): a numeric feature takes a
number that is finite as a float32; a categorical one takes a category (stripped, at most
``MAX_CATEGORY_CHARS`` characters, never missing: ``""``, ``NA``, ``n/a``, ``null``), an unknown one
the out-of-vocabulary index (``modelops.domain.encoding``). A row predict would refuse is a reject
(row number, reason); the rest of the chunk is scored. The answers are written from predict's own
answer (``render.render``): the same predictions, the same float32 probabilities.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelops.domain.encoding import MAX_CATEGORY_CHARS, MISSING_TOKENS, InputSchema
from modelops.stages.predict import render
from modelops.stages.predict.serving import ModelInfo

MAX_HEADER_BYTES = 64 * 1024
MAX_REASON_CHARS = 300


class InputError(ValueError):
    """The input cannot be scored at all (its header lacks a feature, it is not UTF-8, ...)."""


def parse_header(line: bytes) -> list[str]:
    """The header's column names (a UTF-8 byte-order mark and a trailing CR dropped, names stripped)."""
    if len(line) > MAX_HEADER_BYTES:
        raise InputError(f"the header is longer than {MAX_HEADER_BYTES} bytes")
    try:
        text = line.decode("utf-8").removeprefix("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError("the header is not UTF-8") from None
    names = [n.strip() for n in next(csv.reader([text]), [])]
    if not names or names == [""]:
        raise InputError("the input has no header row")
    return names


def columns_for(header: list[str], schema: InputSchema) -> list[int]:
    """The header's index of each feature, in the schema's order; other columns are ignored."""
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen and name in schema.names:
            raise InputError(f"the header names feature {name[:60]!r} twice")
        seen.setdefault(name, i)
    missing = [n for n in schema.names if n not in seen]
    if missing:
        shown = ", ".join(repr(n[:60]) for n in missing[:5])
        raise InputError(f"the header lacks the model's feature(s) {shown}")
    return [seen[n] for n in schema.names]


@dataclass
class Parsed:
    """A chunk's rows: the scored rows' input matrix and row numbers, the rejects, OOV counts."""

    x: np.ndarray
    rows: np.ndarray
    rejects: list[tuple[int, str]] = field(default_factory=list)
    oov: dict[str, int] = field(default_factory=dict)
    lines: int = 0


def _lines(data: bytes, first_row: int) -> list[tuple[int, str | None]]:
    """(row number, text or None when the line is not UTF-8); a final newline ends the last line."""
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        out: list[tuple[int, str | None]] = []
        for i, b in enumerate(raw):
            try:
                out.append((first_row + i, b.decode("utf-8").rstrip("\r")))
            except UnicodeDecodeError:
                out.append((first_row + i, None))
        return out
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [(first_row + i, t[:-1] if t.endswith("\r") else t) for i, t in enumerate(parts)]


def parse_rows(data: bytes, first_row: int, header: list[str], schema: InputSchema) -> Parsed:
    """The data lines of ``data`` (whole lines; the first is row ``first_row``) read as predict reads a
    request's rows; every line is either a row of ``x`` or a reject."""
    columns = columns_for(header, schema)
    width = len(header)
    features = schema.features
    tables = [schema.lookup(f.name) if f.categorical else None for f in features]
    oov = [0] * len(features)
    values: list[list[float]] = []
    numbers: list[int] = []
    rejects: list[tuple[int, str]] = []
    lines = _lines(data, first_row)
    texts = [t if t is not None else "" for _, t in lines]
    for (row, text), cells in zip(lines, csv.reader(texts, strict=False), strict=True):
        if text is None:
            rejects.append((row, "the row is not UTF-8"))
            continue
        if not text.strip():
            rejects.append((row, "empty row"))
            continue
        if len(cells) != width:
            rejects.append((row, f"has {len(cells)} fields; the header has {width}"))
            continue
        out: list[float] = []
        problem = None
        for j, c in enumerate(columns):
            cell = cells[c]
            table = tables[j]
            name = features[j].name
            if table is None:
                t = cell.strip()
                if t.lower() in MISSING_TOKENS:
                    problem = f"{name} is missing; expected a number"
                    break
                try:
                    if "_" in t:  # Python reads 1_000; JSON and CSV writers do not write it
                        raise ValueError(t)
                    v = float(t)
                except ValueError:
                    problem = f"{name} is {t[:40]!r}; expected a number"
                    break
                out.append(v)
                continue
            t = cell.strip()
            if len(t) > MAX_CATEGORY_CHARS:
                problem = f"{name} is {len(t)} characters long; a category has at most {MAX_CATEGORY_CHARS}"
                break
            if t.lower() in MISSING_TOKENS:
                problem = f"{name} is missing ({cell[:8]!r}); expected a category"
                break
            k = table.get(t)
            if k is None:
                k = len(table)
                oov[j] += 1
            out.append(float(k))
        if problem is not None:
            rejects.append((row, problem[:MAX_REASON_CHARS]))
            continue
        values.append(out)
        numbers.append(row)
    f = len(features)
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.array(values, dtype=np.float64).reshape(-1, f).astype(np.float32)
    rows = np.array(numbers, dtype=np.int64)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():  # NaN, inf, or beyond float32 (predict refuses them: 422)
        for i in np.flatnonzero(~finite).tolist():
            j = int(np.flatnonzero(~np.isfinite(x[i]))[0])
            rejects.append((int(rows[i]), f"{features[j].name} is not a finite float32 number"))
        x, rows = x[finite], rows[finite]
        rejects.sort()
    return Parsed(
        x,
        rows,
        rejects,
        {features[j].name: n for j, n in enumerate(oov) if tables[j] is not None},
        len(lines),
    )


# ---------------------------------------------------------------------------------------------- output
def _csv_text(value: Any) -> str:
    if isinstance(value, str):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([value])
        return buf.getvalue()
    return orjson.dumps(value).decode()


def output_header(info: ModelInfo, n_outputs: int) -> list[str]:
    """``row,prediction`` (regression, one output), ``row,prediction_0..`` (several outputs), or
    ``row,prediction,probability_{label}...`` (classification, in predict's ``labels`` order)."""
    if info.task == "regression":
        return (
            ["row", "prediction"]
            if n_outputs == 1
            else ["row", *(f"prediction_{i}" for i in range(n_outputs))]
        )
    labels = info.classes if info.classes is not None else tuple(range(max(n_outputs, 2)))
    return ["row", "prediction", *(f"probability_{label}" for label in labels)]


def render_part(info: ModelInfo, model: str, y: np.ndarray, rows: np.ndarray) -> bytes:
    """The part's CSV: the header, then one line per scored row from predict's answer for ``y``."""
    head = output_header(info, int(y.shape[1]) if y.ndim == 2 and y.shape[0] else 1)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(head)
    if y.shape[0] == 0:
        return buf.getvalue().encode()
    doc = orjson.loads(render.render(info, model, y, "batch"))
    preds = doc["predictions"]
    numbers = rows.tolist()
    out = [buf.getvalue()]
    if info.task == "regression":
        if preds and isinstance(preds[0], list):
            out.extend(f"{r},{','.join(map(repr, p))}\n" for r, p in zip(numbers, preds, strict=True))
        else:
            out.extend(f"{r},{p!r}\n" for r, p in zip(numbers, preds, strict=True))
        return "".join(out).encode()
    shown = {repr(label): _csv_text(label) for label in doc["labels"]}
    probs = doc["probabilities"]
    out.extend(
        f"{r},{shown[repr(p)]},{','.join(map(repr, q))}\n"
        for r, p, q in zip(numbers, preds, probs, strict=True)
    )
    return "".join(out).encode()


def render_rejects(rejects: list[tuple[int, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "reason"])
    w.writerows(rejects)
    return buf.getvalue().encode()
