"""Reading a POST predict request: Content-Type, body size, JSON, ``instances``, ``?alias=`` /
``?version=``, and rows or records into a float32 matrix in the schema's feature order.

Validated with numpy (one conversion, a Python type check for a few rows), not per-field pydantic
models; ``_diagnose``, which names the first bad row and field, runs only for bad input.

A model with categorical features (``ModelInfo.categorical``) takes :func:`to_encoded` instead of
:func:`to_matrix`: one pass in Python that checks every cell (a number for a numeric feature, a
category string for a categorical one) and writes the model's input matrix, a categorical column
holding the value's index in the feature's vocabulary (``modelops.domain.encoding``), an unknown
value the out-of-vocabulary index (answered, and counted). The numeric path never runs it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelops.domain.alias import ALIAS_RE
from modelops.domain.encoding import MAX_CATEGORY_CHARS, MISSING_TOKENS
from modelops.stages.predict.errors import JSON, RequestError
from modelops.stages.predict.serving import FLOAT32_MAX, ModelInfo

_ACCEPTED_MEDIA_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})


@dataclass(slots=True)
class RawRequest:
    """A POST predict request as the event carries it (nothing checked yet), and what the service
    learnt of it before it failed or answered (``rows``, ``version``: the request's log line)."""

    name: str
    body: str | None
    is_base64: bool
    content_type: str | None
    query: Mapping[str, str]
    routing_key: str | None
    request_id: str
    caller: str | None = None
    rows: int | None = None
    version: int | None = None


def check_content_type(content_type: str | None) -> None:
    """JSON, or no Content-Type, or curl's default form type (the body must still be JSON)."""
    if content_type is None or content_type == JSON:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _ACCEPTED_MEDIA_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return
    raise RequestError(
        415, "unsupported_media_type", f"Content-Type {media[:60]!r} is not supported; send {JSON}"
    )


def body_bytes(body: str | None, is_base64: bool, limit: int) -> str | bytes:
    """The body, size-checked before anything parses it (413 over ``limit`` bytes)."""
    if not body:
        raise RequestError(400, "invalid_json", 'the request body is empty; send {"instances": [...]}')
    if is_base64:
        if len(body) > (limit + 2) // 3 * 4 + 4:
            raise _too_big(limit)
        try:
            raw: str | bytes = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "invalid_json", "the request body is not valid base64") from None
        size = len(raw)
    else:
        raw = body
        size = len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise _too_big(limit)
    return raw


def _too_big(limit: int) -> RequestError:
    return RequestError(413, "payload_too_large", f"the request body is larger than {limit} bytes")


def parse_json(raw: str | bytes) -> Any:
    """Strict JSON first (fast); NaN, Infinity and 1e400 are then accepted here so that the row and
    field that hold them can be named (they are rejected by ``to_matrix``)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        strict = str(exc)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise RequestError(400, "invalid_json", f"the request body is not valid JSON: {strict}") from None


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    return "an object"


def instances_of(doc: Any, max_rows: int) -> list[Any] | None:
    """The body's ``instances``, checked as a list of 1 to ``max_rows`` rows; None for a columnar
    body (``{"inputs": ...}``, or one with ``signature_name``: a tensor model's, checked with its
    signature once the model is known, ``modelops.domain.signature``)."""
    if type(doc) is not dict:
        raise RequestError(
            422,
            "invalid_request",
            f'the body must be a JSON object {{"instances": [...]}}, not {_json_type(doc)}',
        )
    if len(doc) != 1 or "instances" not in doc:
        if "inputs" in doc and "instances" in doc:
            raise RequestError(
                422,
                "invalid_request",
                "give 'instances' (row format) or 'inputs' (columnar format), not both",
            )
        if "inputs" in doc or "signature_name" in doc:
            return None
        extra = sorted(k for k in doc if k != "instances")
        if extra:
            raise RequestError(
                422, "invalid_request", f"unknown key {extra[0][:60]!r}; the body takes only 'instances'"
            )
        raise RequestError(422, "invalid_request", "'instances' is missing")
    inst = doc["instances"]
    if type(inst) is not list:
        raise RequestError(
            422, "invalid_request", f"'instances' must be a list of rows or records, not {_json_type(inst)}"
        )
    if not inst:
        raise RequestError(422, "invalid_request", "'instances' is empty; send at least one row")
    if len(inst) > max_rows:
        raise RequestError(413, "too_many_rows", f"{len(inst)} rows; at most {max_rows} per request")
    return inst


def _features_hint(info: ModelInfo) -> str:
    names = ", ".join(info.features[:8]) + (", …" if info.n_features > 8 else "")
    return f"{info.n_features} features ({names})"


def _value_problem(v: Any) -> str | None:
    t = type(v)
    if t is float:
        if v != v:
            return "is NaN; expected a finite number"
        if abs(v) > FLOAT32_MAX:
            return "is infinite or out of the float32 range (±3.4e38); expected a finite number"
        return None
    if t is int:
        return "is out of the float32 range (±3.4e38)" if abs(v) > FLOAT32_MAX else None
    if t is list:
        return "is a list; expected a number (nested lists are not allowed)"
    return f"is {_json_type(v)}; expected a number"


def _diagnose(instances: list[Any], info: ModelInfo, records: bool) -> RequestError | None:
    """The first bad row or field, described for the caller (the slow path, only for bad input)."""

    def bad(message: str) -> RequestError:
        return RequestError(422, "invalid_instances", message)

    f = info.n_features
    known = set(info.features)
    for i, row in enumerate(instances):
        if records:
            if type(row) is not dict:
                return bad(
                    f"instances[{i}]: expected an object keyed by feature name like instances[0], not {_json_type(row)}"
                )
            for name in info.features:
                if name not in row:
                    return bad(f"instances[{i}]: missing feature {name!r}")
            for k in row:
                if k not in known:
                    return bad(
                        f"instances[{i}]: unknown feature {k[:60]!r}; the model takes {_features_hint(info)}"
                    )
            for name in info.features:
                problem = _value_problem(row[name])
                if problem:
                    return bad(f"instances[{i}].{name} {problem}")
        else:
            if type(row) is not list:
                return bad(
                    f"instances[{i}]: expected a list of {f} numbers in schema order like instances[0], not {_json_type(row)}"
                )
            if len(row) != f:
                return bad(f"instances[{i}]: has {len(row)} values; the model takes {_features_hint(info)}")
            for j, v in enumerate(row):
                problem = _value_problem(v)
                if problem:
                    return bad(f"instances[{i}][{j}] ({info.features[j]!r}) {problem}")
    return None


_SMALL_BATCH = 16
_FLOAT32_FINITE = 2.0**128 - 2.0**103  # a number under this in magnitude rounds to a finite float32


def _float32_numbers(rows: list[Any], f: int) -> bool:
    """Every row a list of ``f`` JSON numbers (ints or floats, not booleans) that round to finite
    float32 values (so NaN, infinities and 1e39 are not)?"""
    for r in rows:
        if type(r) is not list or len(r) != f:
            return False
        for v in r:
            t = type(v)
            if (t is not float and t is not int) or not -_FLOAT32_FINITE < v < _FLOAT32_FINITE:
                return False
    return True


def may_hold_booleans(raw: str | bytes) -> bool:
    if isinstance(raw, str):
        return "true" in raw or "false" in raw
    return b"true" in raw or b"false" in raw


def to_matrix(instances: list[Any], info: ModelInfo, raw: str | bytes) -> np.ndarray:
    """Rows (lists in schema order) or records (objects keyed by feature name) -> (n, f) float32.

    The common case costs one check of the values and one numpy conversion; anything unusual (strings,
    booleans, nulls, ragged or nested rows, non-finite or out-of-range numbers) takes ``_diagnose``,
    which names the first bad row and field.
    """
    f = info.n_features
    first = instances[0]
    records = type(first) is dict
    rows: list[Any]
    if records:
        names = info.features
        try:
            rows = [[r[k] for k in names] for r in instances]
        except (KeyError, TypeError, IndexError):
            raise _diagnose(instances, info, True) or _unexpected() from None
        if any(len(r) != f for r in instances):
            raise _diagnose(instances, info, True) or _unexpected()
    elif type(first) is list:
        rows = instances
    else:
        raise RequestError(
            422,
            "invalid_instances",
            f"instances[0]: expected a list of numbers in schema order or an object keyed by feature name, "
            f"not {_json_type(first)}",
        )
    arr: np.ndarray | None = None
    if len(rows) <= _SMALL_BATCH:  # a few rows: checking values in Python beats numpy's type inference
        ok = False
        if _float32_numbers(rows, f):  # nothing to overflow or be non-finite: convert and done
            try:
                return np.array(rows, dtype=np.float32)
            except (ValueError, TypeError, OverflowError):
                pass  # the general path below names what failed
    else:
        try:
            arr = np.array(rows)
            ok = (
                arr.ndim == 2 and arr.shape[1] == f and arr.dtype.kind in "fiu" and not may_hold_booleans(raw)
            )
        except (ValueError, TypeError, OverflowError):
            ok = False
    if not ok:
        err = _diagnose(instances, info, records)
        if err is not None:
            raise err
        arr = None  # every value is a number after all (say, an integer beyond int64): convert from the rows
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.array(rows, dtype=np.float32) if arr is None else arr.astype(np.float32)
    except (ValueError, TypeError, OverflowError):
        raise _diagnose(instances, info, records) or _unexpected() from None
    if not np.isfinite(x).all():
        raise _diagnose(instances, info, records) or _unexpected()
    return x


def to_encoded(instances: list[Any], info: ModelInfo) -> tuple[np.ndarray, dict[str, int]]:
    """Rows or records of a model with categorical features -> (its (n, f) float32 input matrix, the
    out-of-vocabulary cells per categorical feature). A numeric feature takes a finite JSON number; a
    categorical one a JSON string (stripped; at most ``MAX_CATEGORY_CHARS`` characters; empty,
    whitespace or ``NA`` is missing and refused, as a missing number is). 422 names the first bad
    row and feature."""
    schema = info.input_schema
    features = schema.features
    f = len(features)
    first = instances[0]
    records = type(first) is dict
    if not records and type(first) is not list:
        raise RequestError(
            422,
            "invalid_instances",
            f"instances[0]: expected a list of values in schema order or an object keyed by feature name, "
            f"not {_json_type(first)}",
        )
    tables = [schema.lookup(feat.name) if feat.categorical else None for feat in features]
    known = set(info.features) if records else frozenset()
    x = np.empty((len(instances), f), dtype=np.float32)
    oov = [0] * f
    for i, row in enumerate(instances):
        if records:
            if type(row) is not dict:
                raise _bad(
                    f"instances[{i}]: expected an object keyed by feature name like instances[0], not {_json_type(row)}"
                )
            if len(row) != f or any(k not in known for k in row):
                raise _bad(_record_keys_problem(i, row, info))
            cells = [row[name] for name in info.features]
        else:
            if type(row) is not list:
                raise _bad(
                    f"instances[{i}]: expected a list of {f} values in schema order like instances[0], not {_json_type(row)}"
                )
            if len(row) != f:
                raise _bad(f"instances[{i}]: has {len(row)} values; the model takes {_features_hint(info)}")
            cells = row
        for j, v in enumerate(cells):
            table = tables[j]
            if table is None:
                t = type(v)
                if (t is not float and t is not int) or not -_FLOAT32_FINITE < v < _FLOAT32_FINITE:
                    raise _bad(f"{_where(i, j, info, records)} {_value_problem(v) or 'is not a number'}")
                x[i, j] = v
                continue
            if type(v) is not str:
                raise _bad(
                    f"{_where(i, j, info, records)} is {_json_type(v)}; expected a category (a string)"
                )
            text = v.strip()
            if len(text) > MAX_CATEGORY_CHARS:
                raise _bad(
                    f"{_where(i, j, info, records)} is {len(text)} characters long; a category has at most "
                    f"{MAX_CATEGORY_CHARS}"
                )
            if text.lower() in MISSING_TOKENS:
                raise _bad(
                    f"{_where(i, j, info, records)} is missing ({v[:8]!r}); send the category, or a value "
                    "the model does not know (it answers with the out-of-vocabulary bucket)"
                )
            k = table.get(text)
            if k is None:
                k = len(table)
                oov[j] += 1
            x[i, j] = k
    return x, {features[j].name: n for j, n in enumerate(oov) if tables[j] is not None}


def _where(i: int, j: int, info: ModelInfo, records: bool) -> str:
    return f"instances[{i}].{info.features[j]}" if records else f"instances[{i}][{j}] ({info.features[j]!r})"


def _record_keys_problem(i: int, row: dict[str, Any], info: ModelInfo) -> str:
    for name in info.features:
        if name not in row:
            return f"instances[{i}]: missing feature {name!r}"
    known = set(info.features)
    unknown = next(k for k in row if k not in known)
    return f"instances[{i}]: unknown feature {unknown[:60]!r}; the model takes {_features_hint(info)}"


def _bad(message: str) -> RequestError:
    return RequestError(422, "invalid_instances", message)


def _unexpected() -> RequestError:
    return RequestError(422, "invalid_instances", "the instances could not be read as numbers")


def selector(query: Mapping[str, str]) -> tuple[str | None, int | None]:
    """``?alias=`` or ``?version=`` (not both); 400 when malformed."""
    alias = query.get("alias")
    version = query.get("version")
    if alias is not None and version is not None:
        raise RequestError(400, "invalid_parameter", "give ?alias= or ?version=, not both")
    if alias is not None and not ALIAS_RE.match(alias):
        raise RequestError(400, "invalid_parameter", f"invalid alias {alias[:40]!r}")
    if version is not None:
        if not (version.isascii() and version.isdigit() and len(version) <= 9 and int(version) >= 1):
            raise RequestError(
                400, "invalid_parameter", f"version must be a positive integer, not {version[:20]!r}"
            )
        return None, int(version)
    return alias, None
