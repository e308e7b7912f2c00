"""Tensor models (issue 15, items 3 and 4): a Keras model with two named inputs and two outputs
converted by ``modelops.ml.convert.convert_tensors`` (its signature is the schema, parity per
output), published to a moto registry and served by the predict Lambda in TF Serving's row and
columnar formats; bad requests are 4xx with the error shape; models LiteRT cannot serve (a Flex op,
a dynamic non-batch dimension) are refused naming the op or the dimension."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from functions.predict.app import lambda_handler
from modelops.domain.capture import decode_tensor_line
from modelops.domain.errors import ConversionError, UnsupportedOpError
from modelops.stages.predict.service import PredictService, configure
from modelops.stages.predict.settings import Settings
from modelops.storage.registry import Registry
from tests.integration.predict_support import Ctx, api_event

pytestmark = pytest.mark.slow

ROWS = 6


@pytest.fixture(scope="module")
def tensor_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The converted model, its signature and the Keras model's answers on the sample."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from modelops.ml.convert import convert_tensors

    keras.utils.set_random_seed(7)
    image = keras.Input((8, 8, 1), name="image")
    meta = keras.Input((3,), name="meta")
    h = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
    h = keras.layers.Dense(6, activation="relu")(h)
    model = keras.Model(
        inputs={"image": image, "meta": meta},
        outputs={
            "digit": keras.layers.Dense(3, activation="softmax", name="digit")(h),
            "score": keras.layers.Dense(1, name="score")(h),
        },
    )
    saved = tmp_path_factory.mktemp("tensors") / "saved"
    model.export(str(saved), verbose=False)
    rng = np.random.default_rng(0)
    sample = {
        "image": rng.random((ROWS, 8, 8, 1), dtype=np.float32),
        "meta": rng.random((ROWS, 3), dtype=np.float32),
    }
    out, sig = convert_tensors(saved, sample, task="regression")
    keras_out = model(sample, training=False)
    return {
        "out": out,
        "sig": sig,
        "sample": sample,
        "keras": {k: np.asarray(v) for k, v in keras_out.items()},
    }


def test_the_signature_is_the_schema_and_parity_is_per_output(tensor_model: dict[str, Any]) -> None:
    sig, out = tensor_model["sig"], tensor_model["out"]
    assert sig.to_dict() == {
        "inputs": [
            {"name": "image", "shape": [8, 8, 1], "dtype": "float32"},
            {"name": "meta", "shape": [3], "dtype": "float32"},
        ],
        "outputs": [
            {"name": "digit", "shape": [3], "dtype": "float32"},
            {"name": "score", "shape": [1], "dtype": "float32"},
        ],
    }
    per = out.parity["float32"]["outputs"]
    assert set(per) == {"digit", "score"} and all(p["passed"] and p["rows"] == ROWS for p in per.values())
    assert "FULLY_CONNECTED" in out.serving_budget["ops"]


@pytest.fixture
def served(tensor_model: dict[str, Any], s3, registry_bucket: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    registry = Registry(s3, registry_bucket, actor="test")
    manifest = registry.publish_version(
        "digits",
        {"tflite": ("model.tflite", tensor_model["out"].tflite)},
        {
            "task": "regression",
            "schema": {
                "task": "regression",
                "target": None,
                "classes": None,
                **tensor_model["sig"].to_dict(),
            },
            "spec": {"task": "regression"},
            "metrics": {},
        },
    )
    registry.promote("digits", manifest.version)
    settings = Settings(registry_bucket=registry_bucket, capture_stream="", artifact_dir=str(tmp_path / "a"))
    configure(PredictService.from_settings(settings, s3=s3, events_factory=lambda: None))
    yield tensor_model
    configure(None)


def _post(body: Any) -> tuple[int, dict[str, Any]]:
    text = body if isinstance(body, str) else json.dumps(body)
    res = lambda_handler(api_event("POST", "/models/digits/predict", body=text), Ctx())
    return res["statusCode"], json.loads(res["body"])


def test_row_and_columnar_requests_answer_like_keras(served: dict[str, Any]) -> None:
    sample, want = served["sample"], served["keras"]
    rows = [{"image": sample["image"][i].tolist(), "meta": sample["meta"][i].tolist()} for i in range(3)]
    status, doc = _post({"instances": rows})
    assert status == 200, doc
    assert doc["model"] == "digits" and doc["version"] == 1 and doc["request_id"] == "req-0001"
    assert [sorted(p) for p in doc["predictions"]] == [["digit", "score"]] * 3
    got = np.array([p["digit"] for p in doc["predictions"]])
    np.testing.assert_allclose(got, want["digit"][:3], atol=1e-5)

    status, doc = _post(
        {"inputs": {"image": sample["image"][:2].tolist(), "meta": sample["meta"][:2].tolist()}}
    )
    assert status == 200, doc
    assert "predictions" not in doc and sorted(doc["outputs"]) == ["digit", "score"]
    np.testing.assert_allclose(np.array(doc["outputs"]["score"]), want["score"][:2], atol=1e-5)


class _Firehose:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> dict[str, Any]:
        self.data.extend(r["Data"] for r in Records)
        return {"FailedPutCount": 0}


def test_a_tensor_request_is_captured_as_a_v2_line_with_every_input_and_output(
    served: dict[str, Any],
    s3,
    registry_bucket: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    # Given a service with a capture stream (the spec's sample rate defaults to 1)
    firehose = _Firehose()
    settings = Settings(
        registry_bucket=registry_bucket, capture_stream="cap", artifact_dir=str(tmp_path / "c")
    )
    svc = PredictService.from_settings(
        settings, s3=s3, events_factory=lambda: None, firehose_factory=lambda: firehose
    )
    configure(svc)
    sample = served["sample"]

    # When a columnar request of two rows is answered
    status, doc = _post(
        {"inputs": {"image": sample["image"][:2].tolist(), "meta": sample["meta"][:2].tolist()}}
    )
    assert status == 200, doc
    assert svc.sink is not None and svc.sink.flush(10.0)

    # Then one format-2 line holds both inputs as sent and both outputs as answered
    (line,) = [line for rec in firehose.data for line in rec.splitlines()]
    rec = decode_tensor_line(line)
    assert (rec.model, rec.version, rec.request_id, rec.n) == ("digits", 1, doc["request_id"], 2)
    assert list(rec.inputs) == ["image", "meta"] and list(rec.outputs) == ["digit", "score"]
    np.testing.assert_array_equal(rec.inputs["image"], sample["image"][:2])
    np.testing.assert_array_equal(rec.inputs["meta"], sample["meta"][:2])
    np.testing.assert_allclose(rec.outputs["score"][:, 0], np.array(doc["outputs"]["score"])[:, 0], atol=1e-6)
    assert svc.sink.take_failures() == 0
    svc.sink.close()


def test_the_model_page_shows_inputs_and_outputs(served: dict[str, Any]) -> None:
    res = lambda_handler(api_event("GET", "/models/digits"), Ctx())
    schema = json.loads(res["body"])["schema"]
    assert schema["inputs"][0] == {"name": "image", "shape": [8, 8, 1], "dtype": "float32"}
    assert [o["name"] for o in schema["outputs"]] == ["digit", "score"]


IMAGE = np.zeros((8, 8, 1)).tolist()


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (
            {"instances": [{"image": IMAGE, "meta": [1, 2]}]},
            422,
            "invalid_instances",
            "instances[0].meta has 2 values; expected 3",
        ),
        (
            {"instances": [{"image": IMAGE, "meta": [1, "x", 3]}]},
            422,
            "invalid_instances",
            "instances[0].meta[1] is a string",
        ),
        (
            {"instances": [{"image": IMAGE, "meta": [1, True, 3]}]},
            422,
            "invalid_instances",
            "instances[0].meta[1] is a boolean",
        ),
        ({"instances": [{"image": IMAGE}]}, 422, "invalid_instances", "missing input 'meta'"),
        (
            {"instances": [{"image": IMAGE, "meta": [1, 2, 3], "age": 4}]},
            422,
            "invalid_instances",
            "unknown input 'age'",
        ),
        (
            {"instances": [{"image": IMAGE[:7], "meta": [1, 2, 3]}]},
            422,
            "invalid_instances",
            "instances[0].image has 7 values; expected 8",
        ),
        (
            {"inputs": {"image": [IMAGE, IMAGE[:3]], "meta": [[1, 2, 3], [1, 2, 3]]}},
            422,
            "invalid_instances",
            "inputs.image[1] has 3 values",
        ),
        (
            {"instances": [{"image": IMAGE, "meta": [1, 2, 3]}], "inputs": {}},
            422,
            "invalid_request",
            "not both",
        ),
    ],
)
def test_bad_tensor_requests_are_4xx_with_the_error_shape(
    served: dict[str, Any], body: Any, status: int, code: str, message: str
) -> None:
    got, doc = _post(body)
    assert got == status
    assert doc["error"]["code"] == code and message in doc["error"]["message"]
    assert doc["error"]["request_id"] == "req-0001"


def test_a_model_with_a_flex_op_is_refused_naming_the_op(tmp_path: Path) -> None:
    import tensorflow as tf

    from modelops.ml.convert import convert_tensors

    class Strings(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x: Any) -> Any:
            return {"y": tf.strings.to_number(tf.strings.as_string(x))}

    m = Strings()
    tf.saved_model.save(m, str(tmp_path / "s"), signatures={"serving_default": m.serve})
    with pytest.raises(UnsupportedOpError) as exc:
        convert_tensors(tmp_path / "s", {"x": np.ones((2, 3), np.float32)}, task="regression")
    assert exc.value.ops == ["tf.AsString", "tf.StringToNumber"]
    assert "tf.AsString, tf.StringToNumber" in str(exc.value)


def test_a_dynamic_non_batch_dimension_is_refused_naming_it(tmp_path: Path) -> None:
    import tensorflow as tf

    from modelops.ml.convert import convert_tensors

    class Sequence(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, 4], tf.float32, name="tokens")])
        def serve(self, tokens: Any) -> Any:
            return {"y": tf.reduce_sum(tokens, axis=1)}

    m = Sequence()
    tf.saved_model.save(m, str(tmp_path / "d"), signatures={"serving_default": m.serve})
    with pytest.raises(
        ConversionError, match=r"input 'tokens' has shape \[None, None, 4\]: dimension 1 is dynamic"
    ):
        convert_tensors(tmp_path / "d", {"tokens": np.ones((2, 5, 4), np.float32)}, task="regression")


def test_a_converted_model_with_custom_ops_is_refused_after_conversion(tmp_path: Path) -> None:
    import tensorflow as tf

    from modelops.ml.convert import check_builtin_ops

    class Strings(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x: Any) -> Any:
            return {"y": tf.strings.to_number(tf.strings.as_string(x))}

    m = Strings()
    tf.saved_model.save(m, str(tmp_path / "s"), signatures={"serving_default": m.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "s"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    with pytest.raises(UnsupportedOpError) as exc:
        check_builtin_ops(converter.convert())
    assert exc.value.ops == ["tf.AsString", "tf.StringToNumber"]
    assert "Flex/TF Select" in str(exc.value)


def test_a_tensor_answer_that_could_pass_the_response_limit_is_a_413_before_inference(
    tensor_model: dict[str, Any],
    s3,
    registry_bucket: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from modelops.inference import model_info
    from modelops.stages.predict.render import request_bound, tensor_answer_bound

    # Given a tensor model served under a small response limit
    registry = Registry(s3, registry_bucket, actor="test")
    manifest = registry.publish_version(
        "digits",
        {"tflite": ("model.tflite", tensor_model["out"].tflite)},
        {"task": "regression", "schema": {"task": "regression", **tensor_model["sig"].to_dict()}, "spec": {}},
    )
    registry.promote("digits", manifest.version)
    limit = 20_000
    settings = Settings(
        registry_bucket=registry_bucket,
        capture_stream="",
        artifact_dir=str(tmp_path / "a"),
        max_response_bytes=limit,
    )
    configure(PredictService.from_settings(settings, s3=s3, events_factory=lambda: None))
    try:
        fixed, per_row = tensor_answer_bound(model_info(manifest))
        fit = (limit - fixed - request_bound("digits", "req-0001")) // per_row
        assert fit >= 2
        sample = tensor_model["sample"]
        row = {"image": sample["image"][0].tolist(), "meta": sample["meta"][0].tolist()}

        # When as many rows as fit are sent, the answer is served and within the limit
        text = json.dumps({"instances": [row] * fit})
        res = lambda_handler(api_event("POST", "/models/digits/predict", body=text), Ctx())
        assert res["statusCode"] == 200, res["body"][:300]
        assert len(json.dumps(res).encode()) <= limit  # the proxy result Lambda returns

        # and one row more is refused before the model runs, naming how many rows fit
        text = json.dumps({"instances": [row] * (fit + 1)})
        res = lambda_handler(api_event("POST", "/models/digits/predict", body=text), Ctx())
        error = json.loads(res["body"])["error"]
        assert (res["statusCode"], error["code"]) == (413, "response_too_large"), error
        assert f"send at most {fit} rows" in error["message"]
    finally:
        configure(None)
