"""The body of a successful POST predict answer."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modelops.stages.predict.serving import ModelInfo


def render(info: ModelInfo, name: str, y: np.ndarray, request_id: str) -> str:
    """``{"model", "version", "request_id", "predictions"}``, plus ``probabilities`` and ``labels``
    (the schema's classes, in the order of each probability row) for classification. Probabilities
    are float32 values, written as the shortest decimals that read back as the same float32."""
    doc: dict[str, Any] = {"model": name, "version": info.version, "request_id": request_id}
    if info.task == "regression":
        doc["predictions"] = np.ascontiguousarray(y[:, 0]) if y.shape[1] == 1 else y
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    labels = info.classes if info.classes is not None else tuple(range(max(y.shape[1], 2)))
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
