"""The size bound predict checks before inference (issue 17): ``render.answer_bound`` is never below
the proxy result Lambda would return for ``render``'s answer, whatever the model outputs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest

from modelops.stages.predict.proxy import proxy_result
from modelops.stages.predict.render import FLOAT32_TEXT_MAX, answer_bound, render, request_bound
from modelops.stages.predict.serving import ModelInfo


def test_no_float32_is_written_longer_than_the_bound() -> None:
    """Every exponent and sign, with the mantissas that need the most digits (all nine), and random bit
    patterns; NaN and the infinities (``null``)."""
    rng = np.random.default_rng(17)
    exponents = np.arange(0, 256, dtype=np.uint32) << 23
    mantissas = np.concatenate(
        [
            rng.integers(0, 1 << 23, size=400, dtype=np.uint32),
            np.array([0, 1, (1 << 23) - 1], dtype=np.uint32),
        ]
    )
    bits = (exponents[:, None] | mantissas[None, :]).ravel()
    bits = np.concatenate(
        [bits, bits | np.uint32(1 << 31), rng.integers(0, 1 << 32, 200_000, dtype=np.uint32)]
    )
    values = bits.view(np.float32)
    texts = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    assert max(len(t) for t in texts) <= FLOAT32_TEXT_MAX
    # every float32 of a stretch where the fixed-point form is longest (-0.00000dddddddd)
    lo = int(np.float32(1e-6).view(np.uint32))
    stretch = -np.arange(lo, lo + (1 << 20), dtype=np.uint32).view(np.float32)
    texts = orjson.dumps(stretch, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    assert max(len(t) for t in texts) == FLOAT32_TEXT_MAX  # the bound is reached, not just held


def info(task: str, classes: tuple[Any, ...] | None) -> ModelInfo:
    return ModelInfo("m", 123456, task, ("a", "b"), classes, 1.0, "tflite", "0" * 64)


def longest(shape: tuple[int, int]) -> np.ndarray:
    """Outputs that render as long as a float32 can: ``-0.0000010000001`` (16 characters)."""
    return np.full(shape, np.float32(-1.0000001e-6), dtype=np.float32)


@pytest.mark.parametrize(
    ("task", "classes", "outputs"),
    [
        ("regression", None, 1),
        ("regression", None, 3),
        ("binary", (0, 1), 1),  # a sigmoid: [1 - p, p] per row
        ("binary", ("no", 'y"es'), 2),
        ("multiclass", ("setosa", "versicolor", "virginica"), 3),
        ("multiclass", None, 5),  # labels are the indexes
        ("multiclass", ("ü\\", "\x01", 'q"', "\U0001f600" * 3), 4),  # escaped twice: body, then result
    ],
)
@pytest.mark.parametrize("rows", [1, 2, 37])
def test_the_bound_holds_for_the_proxy_result(
    task: str, classes: tuple[Any, ...] | None, outputs: int, rows: int
) -> None:
    i = info(task, classes)
    fixed, per_row = answer_bound(i, outputs)
    name, rid = "a-model-name", "c0ffee00-\U0001f600-\x02-request"
    bound = fixed + rows * per_row + request_bound(name, rid)
    sizes = []
    for y in (longest((rows, outputs)), np.full((rows, outputs), np.nan, dtype=np.float32)):
        if outputs > 1 and task != "regression":
            y[:, -1] = 1.0000001e-6  # the argmax: the last label, the longest in the lists above
        body = render(i, name, y, rid)
        headers = {"Content-Type": "application/json", "X-Model-Version": "123456", "X-Request-Id": rid}
        sizes.append(len(json.dumps(proxy_result((200, body, headers))).encode()))  # the Python runtime's
    assert max(sizes) <= bound
    # and not loose where it matters (many rows): the worst case comes within 10% of it
    if rows > 1 and outputs > 1:
        assert bound - sizes[0] < 0.1 * bound + 1024
