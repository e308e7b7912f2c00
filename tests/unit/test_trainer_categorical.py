"""The trainer with categorical features (modelops.ml.trainer): vocabularies from the training rows
or from production's pinned ``input_schema.json``, the index matrix in ``heldout.npz``, one-hot
inside the graph with LiteRT builtin ops (convert and parity unchanged). Two small trainings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.domain.encoding import Feature, InputSchema
from modelops.domain.errors import DatasetRejectedError
from modelops.domain.spec import ModelSpec, parse_spec
from modelops.ml.job import find_dataset
from tests.categorical_data import SPEC_FEATURES, TARGET, table

N = 600


def spec() -> ModelSpec:
    return parse_spec(
        {
            "task": "binary",
            "target": TARGET,
            "features": SPEC_FEATURES,
            "training": {
                "epochs": 40,
                "hidden_units": [16],
                "learning_rate": 0.02,
                "seed": 3,
                "batch_size": 32,
            },
        }
    )


def with_a_value_only_in_heldout_rows(path: Path) -> bytes:
    """The table, with country "lu" in five rows of the held-out split only (never in a training row)."""
    from modelops.ml.trainer import split_indices

    t = table(N, seed=11)
    _, val = split_indices(N, 0.2, 3)
    rows = list(t.rows)
    for i in val[:5].tolist():
        rows[i] = (rows[i][0], rows[i][1], "lu")
    data = type(t)(rows, t.labels).csv_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def test_categorical_columns_train_convert_and_keep_parity(tmp_path: Path) -> None:
    from modelops.ml.convert import convert_and_verify, run_tflite
    from modelops.ml.trainer import train

    # Given a table whose label depends on two categories and a number
    path = tmp_path / "train" / "train.csv"
    with_a_value_only_in_heldout_rows(path)

    metrics = train(path, spec(), tmp_path / "model", log=lambda _: None)

    # Then the model learned the rule, well above the majority class
    assert metrics["accuracy"] > metrics["baseline_accuracy"] + 0.12, metrics
    schema = json.loads((tmp_path / "model" / "schema.json").read_text())
    s = InputSchema.from_dict(schema)
    assert s.names == ("age", "plan", "country") and [f.kind for f in s.features] == [
        "numeric",
        "categorical",
        "categorical",
    ]
    assert schema["features"][0] == {"name": "age", "type": "numeric", "dtype": "float32"}
    assert sorted(s.feature("plan").vocabulary) == ["basic", "pro", "team"]
    # learned from the training rows only: "lu" is only in held-out rows
    assert sorted(s.feature("country").vocabulary) == ["de", "es", "fr", "it", "nl"]
    # heldout.npz holds the index matrix: the model's input width is the number of features
    with np.load(tmp_path / "model" / "heldout.npz", allow_pickle=False) as npz:
        x, y = npz["x"], npz["y"]
    assert x.shape == (120, 3) and x.dtype == np.float32
    assert set(x[:, 1].tolist()) <= {0, 1, 2} and set(x[:, 2].tolist()) <= {0, 1, 2, 3, 4, 5}
    assert (x[:, 2] == 5).sum() == 5  # the five "lu" rows: the OOV bucket
    baseline = json.loads((tmp_path / "model" / "baseline.json").read_text())
    assert set(baseline["features"]) == {"age", "plan", "country"}
    record = json.loads((tmp_path / "model" / "training_record.json").read_text())
    assert set(record["imputation"]) == {"age"}

    # convert: builtin ops only, float32 parity on the index matrix, the same answers as LiteRT runs
    out = convert_and_verify(tmp_path / "model" / "saved_model", x, y, task="binary", metric="accuracy")
    assert out.parity["float32"]["passed"] and out.parity["float32"]["label_agreement"] == 1.0
    probs = run_tflite(out.tflite, x[:4])
    assert probs.shape == (4, 1)
    # one-hot inside the graph: an index beyond the vocabulary (never sent by predict) is no crash
    odd = x[:1].copy()
    odd[0, 1] = 99
    assert np.isfinite(run_tflite(out.tflite, odd)).all()

    # And with production's schema pinned beside the rows: exactly its features and vocabularies
    pinned = InputSchema(
        (
            Feature("age"),
            Feature("plan", "categorical", ("team", "pro", "basic")),
            Feature("country", "categorical", ("fr", "de")),
        )
    )
    (path.parent / "input_schema.json").write_text(json.dumps({"features": pinned.to_list()}))
    assert find_dataset(path.parent) == path  # the schema beside it is not a dataset
    train(path, spec(), tmp_path / "model2", log=lambda _: None)
    again = json.loads((tmp_path / "model2" / "schema.json").read_text())
    assert again["features"] == pinned.to_list()
    with np.load(tmp_path / "model2" / "heldout.npz", allow_pickle=False) as npz:
        x2 = npz["x"]
    # the same rows, coded by the pinned vocabularies (country: de, fr, or OOV 2)
    plan_old = [s.feature("plan").vocabulary[int(i)] for i in x[:, 1]]
    assert [pinned.feature("plan").vocabulary[int(i)] for i in x2[:, 1]] == plan_old
    assert set(x2[:, 2].tolist()) == {0.0, 1.0, 2.0}


def test_a_pinned_feature_the_dataset_lacks_is_refused_before_training(tmp_path: Path) -> None:
    from modelops.ml.trainer import train

    path = tmp_path / "train.csv"
    path.write_bytes(table(100).csv_bytes())
    pinned = InputSchema((Feature("age"), Feature("tier", "categorical", ("a", "b"))))
    (tmp_path / "input_schema.json").write_text(json.dumps({"features": pinned.to_list()}))
    with pytest.raises(DatasetRejectedError, match="tier"):
        train(path, spec(), tmp_path / "model", log=lambda _: None)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("doc", "text"),
    [
        ('{"features": [{"name": "plan", "type": "categorical"}]}', "needs a list of strings"),
        ("[1, 2]", "not a JSON object"),
        ("{", "unusable"),
    ],
)
def test_an_unusable_input_schema_is_refused(tmp_path: Path, doc: str, text: str) -> None:
    from modelops.ml.trainer import check_dataset

    path = tmp_path / "train.csv"
    path.write_bytes(table(100).csv_bytes())
    (tmp_path / "input_schema.json").write_text(doc)
    with pytest.raises(DatasetRejectedError, match=text):
        check_dataset(path, spec(), {})


def test_the_train_channel_ignores_the_input_schema(tmp_path: Path) -> None:
    (tmp_path / "input_schema.json").write_text("{}")
    (tmp_path / "rows.csv").write_text("a\n")
    assert find_dataset(tmp_path) == tmp_path / "rows.csv"
    assert find_dataset(tmp_path, "s3://b/inputs/m/j/rows.csv") == tmp_path / "rows.csv"


def test_a_batch_job_trains_on_the_input_schema_its_hyperparameter_names(tmp_path: Path, s3: Any) -> None:
    import io
    import tarfile

    from modelops_training.entrypoint import run_batch

    # Given the training rows and production's schema in the registry, as train_trigger leaves them
    s3.create_bucket(Bucket="registry")
    data = table(200, seed=2).csv_bytes()
    s3.put_object(Bucket="registry", Key="inputs/demo/job/train.csv", Body=data)
    pinned = InputSchema(
        (Feature("age"), Feature("plan", "categorical", ("pro",)), Feature("country", "categorical", ("fr",)))
    )
    s3.put_object(
        Bucket="registry",
        Key="inputs/demo/job/input_schema.json",
        Body=json.dumps({"features": pinned.to_list()}).encode(),
    )
    s = spec().model_dump(mode="json", by_alias=True)
    s["training"]["epochs"] = 2
    hps = {
        "model": "demo",
        "job": "job",
        "spec": json.dumps(s),
        "dataset_uri": "s3://registry/inputs/demo/job/train.csv",
        "dataset_sha256": hashlib.sha256(data).hexdigest(),
        "input_schema_uri": "s3://registry/inputs/demo/job/input_schema.json",
    }
    env = {
        "SM_HPS": json.dumps(hps),
        "MODELOPS_OUTPUT_S3": "s3://registry/staging/demo/job/output/model.tar.gz",
    }

    assert run_batch(env, s3=s3) == 0

    body = s3.get_object(Bucket="registry", Key="staging/demo/job/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        member = tar.extractfile("schema.json")
        assert member is not None
        assert json.loads(member.read())["features"] == pinned.to_list()
