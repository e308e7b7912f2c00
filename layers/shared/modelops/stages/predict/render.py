"""The body of a successful POST predict answer, and an upper bound of its size before inference."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from modelops.stages.predict.serving import ModelInfo

FLOAT32_TEXT_MAX = 16
"""The longest text orjson writes for a float32 (``-0.0000010000001``; NaN and infinities are
``null``): tests/unit/test_predict_response_limit.py checks it over every exponent."""

PROXY_ENVELOPE_MAX = 512
"""The proxy result around the body (``statusCode``, ``multiValueHeaders`` but the request id,
``isBase64Encoded``): about 200 bytes."""

_CHAR_MAX = 12
"""The most bytes one character of a string can take in the proxy result: orjson writes it in the
body (an astral character: 4 bytes of UTF-8) and the runtime escapes the body into the result's
JSON (ASCII-only: ``\\ud83d\\ude00``)."""


def render(info: ModelInfo, name: str, y: np.ndarray, request_id: str) -> str:
    """``{"model", "version", "request_id", "predictions"}``, plus ``probabilities`` and ``labels``
    (the schema's classes, in the order of each probability row) for classification. Probabilities
    are float32 values, written as the shortest decimals that read back as the same float32."""
    doc: dict[str, Any] = {"model": name, "version": info.version, "request_id": request_id}
    if info.task == "regression":
        doc["predictions"] = np.ascontiguousarray(y[:, 0]) if y.shape[1] == 1 else y
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    labels = _labels(info, y.shape[1])
    if y.shape[1] == 1:  # a sigmoid: P(labels[1])
        if y.shape[0] == 1:  # one row: float32 scalars cost less than numpy's array calls
            p = y[0, 0]
            doc["predictions"] = [labels[1] if p >= 0.5 else labels[0]]
            probs: Any = [[1.0 - p, p]]
        else:
            probs = np.empty((y.shape[0], 2), dtype=np.float32)
            probs[:, 1] = y[:, 0]
            np.subtract(1.0, y[:, 0], out=probs[:, 0])
            doc["predictions"] = [labels[i] for i in (y[:, 0] >= 0.5).tolist()]
    else:
        probs = np.ascontiguousarray(y, dtype=np.float32)
        doc["predictions"] = [labels[i] for i in y.argmax(axis=1).tolist()]
    doc["probabilities"] = probs
    doc["labels"] = labels
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _labels(info: ModelInfo, n_outputs: int) -> tuple[Any, ...]:
    return info.classes if info.classes is not None else tuple(range(max(n_outputs, 2)))


def _escaped(text: str) -> int:
    """Bytes of ``text`` once escaped into a JSON string by an ASCII-only encoder (the most any
    encoder writes: a character is at most 6 bytes there, 12 for a surrogate pair)."""
    return len(json.dumps(text)) - 2


def answer_bound(info: ModelInfo, n_outputs: int) -> tuple[int, int]:
    """``(fixed, per_row)``: the Lambda proxy result of ``render``'s answer with ``n`` rows takes at
    most ``fixed + n * per_row + request_bound(name, request_id)`` bytes, the body escaped into the
    result's JSON string. Every number counts ``FLOAT32_TEXT_MAX``; a prediction counts the longest
    label. Computed once per loaded version (``PredictService``), from what ``render`` writes."""
    value = FLOAT32_TEXT_MAX + 1  # and its comma
    skeleton = '{"model":"","version":18446744073709551615,"request_id":"","predictions":[]}'
    if info.task == "regression":
        per_row = value if n_outputs == 1 else n_outputs * value + 2
        return PROXY_ENVELOPE_MAX + _escaped(skeleton), per_row
    labels = _labels(info, n_outputs)
    texts = [orjson.dumps(label).decode() for label in labels]
    skeleton = skeleton[:-1] + ',"probabilities":[],"labels":' + "[" + ",".join(texts) + "]}"
    per_row = max(_escaped(t) for t in texts) + 1 + max(n_outputs, 2) * value + 2
    return PROXY_ENVELOPE_MAX + _escaped(skeleton), per_row


def request_bound(name: str, request_id: str) -> int:
    """The most bytes the request's own strings take in the proxy result (the request id is in the
    body and in the ``X-Request-Id`` header)."""
    return _CHAR_MAX * (len(name) + 2 * len(request_id))


INT_TEXT_MAX = 20
"""The longest text of an int64 (``-9223372036854775808``)."""


def render_tensors(
    info: ModelInfo, name: str, outputs: dict[str, np.ndarray], request_id: str, columnar: bool
) -> str:
    """A tensor model's answer: ``{"model", "version", "request_id"}`` and TF Serving's
    ``predictions`` (row format) or ``outputs`` (columnar format), ``modelops.domain.signature.predictions``;
    for a classifier whose schema has classes also ``labels``, per row the class of the first output
    (``modelops.domain.signature.labels``)."""
    assert info.signature is not None
    from modelops.domain.signature import labels, predictions  # tensor models only

    key, value = predictions(info.signature, outputs, columnar)
    doc = {"model": name, "version": info.version, "request_id": request_id, key: value}
    if info.classes is not None:  # model_info leaves a regression model's classes out
        named = labels(info.signature, info.task, info.classes, outputs)
        if named is not None:
            doc["labels"] = named
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def tensor_answer_bound(info: ModelInfo) -> tuple[int, int]:
    """``(fixed, per_row)`` of :func:`render_tensors`' answer, as :func:`answer_bound` for tabular
    models: every value counts its longest text and its comma, every list its brackets, every output
    of a row its name (row format, several outputs), every label (a classifier with classes) the
    longest class's text and its comma."""
    assert info.signature is not None
    skeleton = '{"model":"","version":18446744073709551615,"request_id":"","predictions":[]}'
    per_row = 0
    for spec in info.signature.outputs:
        value = (FLOAT32_TEXT_MAX if spec.dtype == "float32" else INT_TEXT_MAX) + 1
        brackets = 2 * max(1, spec.size)  # at most one pair per value (nested lists of ones), plus the row's
        per_row += spec.size * value + brackets + 2 + _escaped(spec.name) + 4
    fixed = (
        PROXY_ENVELOPE_MAX + _escaped(skeleton) + sum(_escaped(s.name) + 8 for s in info.signature.outputs)
    )
    if info.classes is not None:
        from modelops.domain.signature import label_output, labels_per_row  # tensor models only

        labelled = label_output(info.signature, info.task, info.classes)
        if labelled is not None:
            count = labels_per_row(labelled)
            longest = max(_escaped(orjson.dumps(c).decode()) for c in info.classes)
            fixed += _escaped(',"labels":[]')
            per_row += count * (longest + 1) + 2 * count  # brackets: at most a pair per label
    return fixed, per_row + 2
