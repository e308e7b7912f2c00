"""Your own TensorFlow model on the twin (issue 15, item 6), on scikit-learn's 8x8 digits (shipped in
the package): a small CNN trained by the user's script uploaded with its data (docs/training.md "A CNN on
images", run as it stands there), served over HTTP with image tensors in TF Serving's row and columnar
formats and right on the platform's held-out digits; and the same kind of CNN trained here, outside the
platform, imported with ``modelops models import``, answering over HTTP as Keras does within the parity
tolerance convert recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from modelops_cli.main import cli
from modelops_local.lifecycle import Life
from modelops_local.own_model import (
    IMAGE,
    IMPORT_MODEL,
    SCRIPT_MODEL,
    SCRIPT_SPEC,
    Outside,
    digits_csv,
    documented_script,
    held_out_digits,
    job_record,
    train_outside,
)
from modelops_local.twin import Twin

pytestmark = [pytest.mark.slow, pytest.mark.twin]


@pytest.fixture
def env(twin_in_env: Twin) -> Twin:
    """The twin, named by the environment as ``eval "$(modelops local env)"`` would (for the CLI)."""
    return twin_in_env


def test_a_users_cnn_script_trains_on_uploaded_digits_and_serves_image_tensors(env: Twin) -> None:
    life = Life(env)
    s3 = life.s3()

    # Given a spec naming the entry point, the documented CNN script under code/, then the digits
    life.upload_spec(SCRIPT_MODEL, SCRIPT_SPEC)
    s3.put_object(
        Bucket=life.data_bucket, Key=f"datasets/{SCRIPT_MODEL}/code/train.py", Body=documented_script()
    )
    life.upload_dataset(SCRIPT_MODEL, "digits.csv", digits_csv())
    life.settle()

    # Then the script's model is version 1, a tensor model with the signature's image input, in production
    assert life.versions(SCRIPT_MODEL) == [1]
    assert life.production(SCRIPT_MODEL) == 1
    manifest = life.manifest(SCRIPT_MODEL, 1)
    schema = manifest.get("schema")
    assert schema["inputs"] == [IMAGE]
    assert [o["shape"] for o in schema["outputs"]] == [[10]]
    assert manifest.get("parity")["float32"]["passed"] is True
    assert manifest.get("parity")["float32"]["rows"] == 256  # the script's sample.npz
    assert manifest.get("training")["record"]["source"] == "training"
    # a classifier: its classes are the dataset's digits (the validator's classes), in the order of the scores
    assert schema["task"] == "multiclass" and schema["classes"] == list(range(10))
    status, page = life.http("GET", f"/models/{SCRIPT_MODEL}")
    assert status == 200 and page["schema"]["inputs"] == [IMAGE]
    assert page["schema"]["classes"] == list(range(10))
    job = job_record(life, manifest.get("training")["job"])
    assert job["code"]["entry_point"] == "train.py"
    assert [f["name"] for f in job["code"]["files"]] == ["train.py"]
    # the version names the code that trained it (lineage), as the job record does
    code = manifest.get("training")["record"]["code"]
    assert (code["sha256"], code["entry_point"]) == (job["code"]["sha256"], "train.py")

    # The platform kept the evaluation rows from the script: they are the held-out digits
    x_held, y_held = held_out_digits(life, job)
    assert len(y_held) == len(x_held) == job["split"]["evaluation"]["rows"] > 250

    # When predict is called over HTTP with the held-out images, in row format and in columnar format
    status, rows = life.http("POST", f"/models/{SCRIPT_MODEL}/predict", {"instances": x_held.tolist()})
    assert status == 200, rows
    status, columns = life.http("POST", f"/models/{SCRIPT_MODEL}/predict", {"inputs": x_held.tolist()})
    assert status == 200, columns

    # Then both answer the same ten probabilities per image, and the digits are right
    by_row = np.asarray(rows["predictions"], dtype=np.float64)
    assert rows["version"] == columns["version"] == 1
    assert by_row.shape == (len(y_held), 10)
    assert np.array_equal(by_row, np.asarray(columns["outputs"], dtype=np.float64))
    accuracy = float(np.mean(by_row.argmax(axis=1) == y_held))
    assert accuracy >= 0.9, accuracy
    # and each answer carries a label per image next to TF Serving's fields: the class of the argmax
    classes = schema["classes"]
    assert rows["labels"] == columns["labels"] == [classes[i] for i in by_row.argmax(axis=1)]
    label_accuracy = float(np.mean(np.asarray(rows["labels"]) == y_held))
    assert label_accuracy >= 0.9, label_accuracy

    # and an image of the wrong shape is refused before the model runs
    status, doc = life.http("POST", f"/models/{SCRIPT_MODEL}/predict", {"instances": [[[0.0] * 8] * 8]})
    assert (status, doc["error"]["code"]) == (422, "invalid_instances"), doc

    # When a second dataset (the first 1,500 digits) trains version 2 with the same script
    text = digits_csv().decode().splitlines(keepends=True)
    life.upload_dataset(SCRIPT_MODEL, "digits-2.csv", "".join(text[:1501]).encode())
    life.settle()

    # Then the gate compared v2 with v1 itself, on the same held-out rows fed to the image input as the
    # CSV has them (64 pixel columns -> [8, 8, 1], the scaling is the models' own layer)
    assert life.versions(SCRIPT_MODEL) == [1, 2]
    (decision,) = [
        h for h in life.history(SCRIPT_MODEL) if h.get("kind") == "gate" and h.get("candidate") == 2
    ]
    assert decision["source"] == "heldout" and decision["evaluation"]["rows"] >= len(y_held), decision
    assert decision["evaluation"]["inputs"] == ["image [8, 8, 1] float32"], decision
    assert decision["evaluation"]["columns"] == 64, decision
    # both scored as predict scores them: v1's accuracy on these rows is the one measured over HTTP above
    assert decision["candidate_value"] >= 0.9 and decision["production_value"] >= 0.9, decision
    assert decision["interval"]["resamples"] == 1000, decision


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Outside:
    """A CNN on the digits trained here, outside the platform: a ``.keras`` file, its sample, its spec."""
    return train_outside(tmp_path_factory.mktemp("digits"))


def test_a_cnn_trained_elsewhere_is_imported_and_answers_as_keras_does(env: Twin, outside: Outside) -> None:
    # Given a Keras CNN trained outside the platform and a sample of its inputs
    # When it is imported with the CLI
    r = CliRunner().invoke(
        cli,
        [
            "models",
            "import",
            IMPORT_MODEL,
            str(outside.path),
            "--sample",
            str(outside.sample),
            "--spec",
            str(outside.spec),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["created"] is True and out["tabular"] is False
    life = Life(env)
    life.settle()

    # Then convert made version 1 of it, a tensor model, in production
    assert life.versions(IMPORT_MODEL) == [1]
    assert life.production(IMPORT_MODEL) == 1
    manifest = life.manifest(IMPORT_MODEL, 1)
    assert manifest.get("training")["record"]["source"] == "import"
    assert manifest.get("schema")["inputs"] == [IMAGE]
    assert manifest.get("schema")["classes"] is None  # imported without --classes or --eval: no classes
    parity = manifest.get("parity")["float32"]
    assert parity["passed"] is True and parity["rows"] == 256

    # and predict over HTTP answers what the Keras model answers, within the recorded parity tolerance
    status, got = life.http("POST", f"/models/{IMPORT_MODEL}/predict", {"instances": outside.x_held.tolist()})
    assert status == 200, got
    assert "labels" not in got  # no classes: the outputs are tensors only
    probs = np.asarray(got["predictions"], dtype=np.float64)
    assert probs.shape == outside.expected.shape == (len(outside.y_held), 10)
    assert np.max(np.abs(probs - outside.expected)) <= parity["tolerance"]
    assert float(np.mean(probs.argmax(axis=1) == outside.y_held)) >= 0.9
