"""Capture format 2 (tensor models): round trip, hostile lines, the sink's tensor path."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from modelops.domain.baseline import compute_tensor_baseline, output_reduce
from modelops.domain.capture import (
    CaptureFormatError,
    TensorLine,
    decode_line,
    decode_tensor_line,
    encode_record,
    encode_tensor_record,
    read_header,
)
from modelops.storage.capture_sink import MAX_RECORD_BYTES, CaptureSink, encode_tensor_lines


def _arrays(n: int = 4) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(n)
    ins = {
        "image": rng.random((n, 8, 8, 1), dtype=np.float32),
        "ids": rng.integers(0, 100, size=(n, 5)).astype(np.int64),
        "meta": rng.integers(-5, 5, size=(n, 3)).astype(np.int32),
    }
    outs = {"digit": rng.random((n, 10), dtype=np.float32), "score": rng.random((n, 1), dtype=np.float32)}
    return ins, outs


def test_a_tensor_record_round_trips_every_input_and_output_with_its_dtype_and_shape() -> None:
    ins, outs = _arrays()
    line = encode_tensor_record("digits", 3, "req-1", 1700000000.1234, ins, outs)

    rec = decode_tensor_line(line)

    assert line.endswith(b"\n") and json.loads(line)["v"] == 2
    assert (rec.model, rec.version, rec.request_id, rec.ts, rec.n) == (
        "digits",
        3,
        "req-1",
        1700000000.123,
        4,
    )
    assert list(rec.inputs) == ["image", "ids", "meta"] and list(rec.outputs) == ["digit", "score"]
    for got, want in ((rec.inputs, ins), (rec.outputs, outs)):
        for name, a in want.items():
            assert got[name].dtype == a.dtype and got[name].shape == a.shape
            np.testing.assert_array_equal(got[name], a)


def test_a_v1_reader_counts_a_v2_line_as_unsupported_and_v1_lines_are_unchanged() -> None:
    ins, outs = _arrays()
    with pytest.raises(TensorLine) as exc:
        read_header(encode_tensor_record("m", 1, "r", 1.0, ins, outs))
    assert exc.value.reason == "unsupported_format" and exc.value.doc["n"] == 4
    with pytest.raises(CaptureFormatError) as v1:
        decode_line(encode_tensor_record("m", 1, "r", 1.0, ins, outs))
    assert v1.value.reason == "unsupported_format"
    x = np.ones((2, 3), np.float32)
    rec = decode_line(encode_record("m", 1, "r", 1.0, x, x[:, :1]))
    assert rec.x.shape == (2, 3) and json.loads(encode_record("m", 1, "r", 1.0, x, x[:, :1]))["v"] == 1


def _doc() -> dict[str, Any]:
    ins, outs = _arrays(2)
    doc: dict[str, Any] = json.loads(encode_tensor_record("m", 1, "r", 1.0, ins, outs))
    return doc


def _hostile() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []

    def edit(reason: str, f: Any) -> None:
        d = _doc()
        f(d)
        cases.append((reason, json.dumps(d)))

    edit("bad_array", lambda d: d["inputs"][0].__setitem__("shape", [8, 8, 2]))  # size != n x shape
    edit("bad_array", lambda d: d["outputs"][1].__setitem__("data", base64.b64encode(b"\0" * 4).decode()))
    edit("bad_array", lambda d: d["inputs"][0].__setitem__("shape", [8, 0, 1]))
    edit("bad_array", lambda d: d["inputs"][0].__setitem__("shape", [1] * 7))
    edit("bad_array", lambda d: d.__setitem__("n", 0))
    edit("unknown_dtype", lambda d: d["inputs"][1].__setitem__("dtype", "float16"))
    edit("unknown_dtype", lambda d: d["inputs"][1].__setitem__("dtype", 7))
    edit("missing_field", lambda d: d["inputs"][0].pop("dtype"))
    edit("missing_field", lambda d: d["inputs"][0].pop("data"))
    edit("missing_field", lambda d: d.pop("outputs"))
    edit("missing_field", lambda d: d.__setitem__("inputs", []))
    edit("missing_field", lambda d: d["inputs"][1].__setitem__("name", "image"))  # a repeated name
    edit("missing_field", lambda d: d.__setitem__("model", 5))
    edit("non_numeric", lambda d: d.__setitem__("n", "2"))
    edit("non_numeric", lambda d: d["inputs"][0].__setitem__("data", "not base64!"))
    cases.append(("not_json", b'{"v": 2, "inputs": ['))
    cases.append(("not_json", b"[2]"))
    return cases


@pytest.mark.parametrize(("reason", "line"), _hostile())
def test_a_hostile_v2_line_is_refused_with_its_reason(reason: str, line: Any) -> None:
    with pytest.raises(CaptureFormatError) as exc:
        decode_tensor_line(line)
    assert exc.value.reason == reason


def test_encoding_refuses_arrays_that_disagree_on_rows_or_have_another_dtype() -> None:
    ins, outs = _arrays()
    with pytest.raises(ValueError, match="rows"):
        encode_tensor_record("m", 1, "r", 1.0, ins, {"digit": outs["digit"][:2]})
    with pytest.raises(ValueError, match="dtype"):
        encode_tensor_record("m", 1, "r", 1.0, {"x": np.ones((4, 2), np.float64)}, outs)


def test_a_request_over_a_firehose_record_is_split_by_rows() -> None:
    ins, outs = _arrays(3000)  # ~1.4 MB of base64 in one line
    lines = encode_tensor_lines("m", 1, "req", 1.0, ins, outs)

    assert len(lines) > 1 and all(len(line) <= MAX_RECORD_BYTES for line in lines)
    recs = [decode_tensor_line(line) for line in lines]
    assert recs[0].request_id == "req#0" and sum(r.n for r in recs) == 3000
    np.testing.assert_array_equal(np.concatenate([r.inputs["ids"] for r in recs]), ins["ids"])


class _Firehose:
    def __init__(self) -> None:
        self.records: list[bytes] = []

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> dict[str, Any]:
        self.records.extend(r["Data"] for r in Records)
        return {"FailedPutCount": 0}


def test_the_sink_queues_tensor_arrays_and_the_sender_encodes_them_as_v2_lines() -> None:
    fh = _Firehose()
    sink = CaptureSink(lambda: fh, "s", rng=lambda: 0.5, clock=lambda: 42.0, linger_seconds=0)
    ins, outs = _arrays(3)

    assert sink.submit_tensors("m", 2, "a", ins, outs, 1.0)
    assert not sink.submit_tensors("m", 2, "b", ins, outs, 0.4)  # sampled out (0.5 >= 0.4)
    assert not sink.submit_tensors("m", 2, "c", ins, outs, 0.0)
    assert sink.flush(5.0)
    sink.close()

    lines = [line for rec in fh.records for line in rec.splitlines()]
    (rec,) = [decode_tensor_line(line) for line in lines]
    assert (rec.request_id, rec.version, rec.ts) == ("a", 2, 42.0) and sink.sent == 1
    np.testing.assert_array_equal(rec.inputs["image"], ins["image"])


def test_the_tensor_baseline_has_per_channel_stats_and_a_reduction_per_output() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((200, 4, 4, 2)).astype(np.float32)
    image[:, :, :, 1] = 0.0
    image[:100, :, :, 1] = 3.0
    probs = rng.random((200, 3)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    b = compute_tensor_baseline(
        {"image": image, "meta": rng.random((200, 3))},
        {"digit": probs, "score": rng.random((200, 1)), "emb": rng.normal(size=(200, 4))},
    )
    assert b["schema_version"] == 3 and b["kind"] == "tensor" and b["n_rows"] == 200
    assert list(b["features"]) == ["image[c0]", "image[c1]", "meta"]
    c1 = b["features"]["image[c1]"]
    assert c1["count"] == 200 * 16 and c1["zero_rate"] == 0.5 and c1["mean"] == pytest.approx(1.5)
    assert (c1["min"], c1["max"]) == (0.0, 3.0) and len(c1["proportions"]) == len(c1["edges"]) + 1
    assert b["inputs"]["image"] == {"shape": [4, 4, 2], "channels": ["image[c0]", "image[c1]"]}
    assert {k: v["reduce"] for k, v in b["outputs"].items()} == {
        "digit": "argmax",
        "score": "value",
        "emb": "mean",
    }
    assert b["prediction"]["reduce"] == "argmax" and b["outputs"]["digit"]["max"] <= 2
    assert output_reduce(np.zeros((0, 3))) == "mean"
    with pytest.raises(ValueError, match="rows"):
        compute_tensor_baseline({"image": image}, {"digit": probs[:10]})
    with pytest.raises(ValueError, match="at least one"):
        compute_tensor_baseline({}, {"digit": probs})
