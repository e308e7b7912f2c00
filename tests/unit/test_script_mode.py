"""Script mode (issue 15, item 1): the spec's entry point, the code folder's keys, the deterministic code
archive, the job's hyperparameters, and the training image's script runner with its failure cases.
No TensorFlow and no network: the scripts here are a few lines of plain Python."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from modelops.compute import CodeRejectedError, JobRequest, package_code
from modelops.compute.source_bundle import deterministic_tar
from modelops.domain.errors import SpecError
from modelops.domain.spec import parse_spec
from modelops.stages.train_trigger import canonical_spec_json, job_name, spec_sha256
from modelops.storage import keys
from modelops_training import entrypoint
from modelops_training import script as scripting

SPEC = {"task": "regression", "target": "y"}


# ---------------------------------------------------------------------------- the spec
def test_entry_point_is_parsed_and_left_out_of_the_spec_json_when_absent() -> None:
    plain = parse_spec(SPEC)
    scripted = parse_spec({**SPEC, "training": {"entry_point": "src/train.py"}})

    assert scripted.training.entry_point == "src/train.py"
    assert plain.training.entry_point is None
    assert "entry_point" not in json.loads(canonical_spec_json(plain))["training"]
    assert json.loads(canonical_spec_json(scripted))["training"]["entry_point"] == "src/train.py"
    assert spec_sha256(plain) != spec_sha256(scripted)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("../train.py", "'..'"),
        ("src/../../train.py", "'..'"),
        ("/abs/train.py", "absolute"),
        ("src\\train.py", "backslash"),
        ("tr\x00ain.py", "NUL"),
        ("./train.py", "'.'"),
        ("src//train.py", "empty"),
        ("my train.py", "characters"),
        ("train.sh", "Python file"),
        ("", "at least 1 character"),
    ],
)
def test_bad_entry_points_are_refused_naming_the_field(entry: str, why: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec({**SPEC, "training": {"entry_point": entry}})
    assert "entry_point" in str(exc.value) and why in str(exc.value)


def test_a_search_cannot_tune_a_users_script() -> None:
    with pytest.raises(SpecError, match="cannot be combined with entry_point"):
        parse_spec(
            {
                **SPEC,
                "training": {
                    "entry_point": "train.py",
                    "search": {"max_trials": 4, "learning_rate": {"min": 1e-4, "max": 1e-2}},
                },
            }
        )


# ---------------------------------------------------------------------------- keys
@pytest.mark.parametrize(
    ("key", "dataset"),
    [
        ("datasets/demo/data.csv", True),
        ("datasets/demo/2024/jan.csv", True),
        ("datasets/demo/eval/pinned.csv", True),  # a pinned evaluation set (handled as one)
        ("datasets/demo/code/data.csv", False),  # the script's own file
        ("datasets/demo/code/sub/rows.parquet", False),
        ("datasets/demo/score/batch.csv", False),
        ("datasets/demo/eval/sub/more.csv", False),  # deeper than a pinned set: never training rows
        ("datasets/demo/code/train.py", False),
    ],
)
def test_files_under_code_score_and_eval_are_never_training_datasets(key: str, dataset: bool) -> None:
    assert keys.is_dataset(key) is dataset


def test_code_keys() -> None:
    assert keys.code_prefix("demo") == "datasets/demo/code/"
    assert keys.code_archive("demo", "ab" * 32) == f"code/demo/{'ab' * 32}.tar.gz"
    # never the trainer's own bundle, even for a model named "training"
    assert keys.code_archive("training", "ab" * 32) != keys.source_bundle("ab" * 32)


# ---------------------------------------------------------------------------- the archive
FILES = {"train.py": b"print('hi')\n", "src/util.py": b"X = 1\n", "requirements.txt": b"\n"}


def test_the_archive_is_deterministic_and_content_addressed() -> None:
    first = package_code(FILES, "train.py")
    again = package_code(dict(reversed(list(FILES.items()))), "train.py")  # another listing order
    changed = package_code({**FILES, "src/util.py": b"X = 2\n"}, "train.py")

    assert first.body == again.body and first.sha256 == again.sha256
    assert first.sha256 == hashlib.sha256(first.body).hexdigest()
    assert changed.sha256 != first.sha256
    assert first.body[:2] == b"\x1f\x8b" and first.body[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    with tarfile.open(fileobj=io.BytesIO(first.body)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(FILES)
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
            (0, 0, 0, "", "", 0o644)
        }
        assert all(m.isfile() for m in members)
        assert tar.extractfile("src/util.py").read() == b"X = 1\n"  # type: ignore[union-attr]
    assert first.requirements
    assert [f["name"] for f in first.files] == sorted(FILES)
    assert first.files[0]["sha256"] == hashlib.sha256(FILES[first.files[0]["name"]]).hexdigest()
    assert first.lineage("s3://r/k")["entry_point"] == "train.py"


def test_the_trainer_bundle_uses_the_same_deterministic_tar() -> None:
    body = deterministic_tar({"b": b"2", "a": b"1"})
    assert body == deterministic_tar({"a": b"1", "b": b"2"})


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"train.py": b"", "../evil.py": b""}, "'..'"),
        ({"train.py": b"", "/etc/x.py": b""}, "absolute"),
        ({"train.py": b"", "a\\b.py": b""}, "backslash"),
        ({"train.py": b"", "a\x00.py": b""}, "NUL"),
        ({"train.py": b"", "lib": b"", "lib/x.py": b""}, "also a folder"),
        ({"other.py": b""}, "has no 'train.py'"),
        ({}, "empty"),
        ({f"m{i}.py": b"" for i in range(5)} | {"train.py": b""}, "at most 5"),
        ({"train.py": b"x" * 11}, "holds 11 bytes; at most 10"),
    ],
)
def test_bad_code_folders_are_refused(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(CodeRejectedError) as exc:
        package_code(files, "train.py", max_files=5, max_bytes=10)
    assert exc.value.code == "bad_code" and message in str(exc.value)


# ---------------------------------------------------------------------------- the job's identity and hyperparameters
def test_the_code_joins_the_job_name_and_leaves_built_in_names_alone() -> None:
    plain = job_name("demo", "a" * 64, "b" * 64, "modelops", stack="registry")
    assert plain == job_name("demo", "a" * 64, "b" * 64, "modelops", stack="registry", code_sha256="")
    first = job_name("demo", "a" * 64, "b" * 64, "modelops", stack="registry", code_sha256="c" * 64)
    assert first != plain
    assert first == job_name("demo", "a" * 64, "b" * 64, "modelops", stack="registry", code_sha256="c" * 64)
    assert first != job_name("demo", "a" * 64, "b" * 64, "modelops", stack="registry", code_sha256="d" * 64)


def _request(**changes: Any) -> JobRequest:
    spec = parse_spec({**SPEC, "training": {"entry_point": "train.py"}})
    req = JobRequest(
        job="modelops-demo-0123456789ab",
        model="demo",
        spec=spec,
        spec_json=canonical_spec_json(spec),
        dataset_bucket="data",
        dataset_key="datasets/demo/d.csv",
        dataset_version_id="v1",
        dataset_sha256="a" * 64,
        rows=10,
        registry_bucket="registry",
        output_prefix="staging/demo/",
        artifact_key="staging/demo/j/output/model.tar.gz",
        trials_prefix="staging/demo/j/trials/",
    )
    return dataclasses.replace(req, **changes)


def test_script_hyperparameters_are_sagemakers_json_encoded() -> None:
    hps = _request(code_uri="s3://registry/code/demo/x.tar.gz", code_sha256="c" * 64).hyperparameters()
    assert hps["sagemaker_program"] == '"train.py"'
    assert hps["sagemaker_submit_directory"] == '"s3://registry/code/demo/x.tar.gz"'
    assert hps["code_sha256"] == "c" * 64
    assert "sagemaker_program" not in _request().hyperparameters()  # no archive: the built-in trainer


# ---------------------------------------------------------------------------- the runner
@dataclasses.dataclass
class Job:
    root: Path
    env: dict[str, str]
    archive: Path
    hps: dict[str, str]
    lines: list[str]

    @property
    def model_dir(self) -> Path:
        return Path(self.env["SM_MODEL_DIR"])

    @property
    def failure(self) -> str:
        return (self.root / "output" / "failure").read_text()


def make_job(tmp_path: Path, files: dict[str, bytes], entry: str = "train.py", sha: str | None = None) -> Job:
    root = tmp_path / "job"
    channel = root / "input" / "data" / "train"
    channel.mkdir(parents=True)
    (channel / "train.csv").write_text("a,y\n1,2\n3,4\n")
    (root / "model").mkdir()
    (root / "output" / "data").mkdir(parents=True)
    code = package_code(files, entry)
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(code.body)
    hps = {
        "model": "demo",
        "job": "modelops-demo-1",
        "spec": json.dumps({**SPEC, "training": {"entry_point": entry}}),
        "sagemaker_program": json.dumps(entry),
        "sagemaker_submit_directory": json.dumps("s3://registry/code/demo/x.tar.gz"),
        "code_sha256": code.sha256 if sha is None else sha,
    }
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hps))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
    }
    return Job(root, env, archive, hps, [])


class FakeS3:
    """``download_file`` from a local archive (the entrypoint's only S3 call in script mode)."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.asked: list[tuple[str, str]] = []

    def download_file(self, bucket: str, key: str, dest: str, **_: Any) -> None:
        self.asked.append((bucket, key))
        Path(dest).write_bytes(self.archive.read_bytes())


def run(job: Job) -> int:
    return entrypoint.run_job(job.env, FakeS3(job.archive))


GOOD = b"""import json, os, sys
hps = json.loads(os.environ["SM_HPS"])
seen = {k: v for k, v in os.environ.items() if k.startswith("SM_")}
seen["argv"] = sys.argv[1:]
seen["spec_type"] = type(hps["spec"]).__name__
seen["rows"] = open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "train.csv")).read().count("\\n")
from helper import NAME
json.dump(seen, open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "seen.json"), "w"))
open(os.path.join(os.environ["SM_MODEL_DIR"], NAME), "wb").write(b"keras")
"""


def test_a_script_runs_under_the_sagemaker_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a script that reads its environment and writes a .keras file
    job = make_job(tmp_path, {"train.py": GOOD, "helper.py": b"NAME = 'model.keras'\n"})

    # When the training image's entrypoint runs the job
    status = run(job)

    # Then the script saw SageMaker's variables, its hyperparameters decoded, the train rows, and left a model
    assert status == 0, capsys.readouterr()
    seen = json.loads((job.root / "output" / "data" / "seen.json").read_text())
    assert seen["SM_MODEL_DIR"] == job.env["SM_MODEL_DIR"]
    assert seen["SM_CHANNEL_TRAIN"] == job.env["SM_CHANNEL_TRAIN"]
    assert seen["SM_NUM_GPUS"].isdigit() and seen["SM_CURRENT_HOST"] == "algo-1"
    assert json.loads(seen["SM_HOSTS"]) == ["algo-1"] and json.loads(seen["SM_CHANNELS"]) == ["train"]
    assert seen["SM_USER_ENTRY_POINT"] == "train.py" and seen["SM_MODULE_NAME"] == "train"
    assert seen["spec_type"] == "dict" and seen["rows"] == 3
    assert "sagemaker_program" not in json.loads(seen["SM_HPS"])  # SageMaker's own are not the script's
    assert seen["SM_HP_MODEL"] == "demo"
    assert seen["argv"][:2] == ["--code_sha256", job.hps["code_sha256"]] and "--spec" in seen["argv"]
    assert (job.model_dir / "model.keras").read_bytes() == b"keras"
    assert not (job.root / "output" / "failure").exists()


def test_a_script_that_raises_fails_the_job_with_its_reason_and_last_lines(tmp_path: Path) -> None:
    script = b"print('loading rows')\nprint('epoch 1/3')\nraise ValueError('the target column is empty')\n"
    job = make_job(tmp_path, {"train.py": script})

    status = run(job)

    assert status == 1
    failure = job.failure
    first_kib = failure[:1024]  # what SageMaker and the twin show as FailureReason
    assert first_kib.startswith(
        "script_failed: train.py exited with status 1: ValueError: the target column is empty"
    )
    assert "--- last lines of its log ---" in failure and "epoch 1/3" in failure and "Traceback" in failure


def test_a_script_that_writes_no_model_fails_clearly(tmp_path: Path) -> None:
    job = make_job(tmp_path, {"train.py": b"print('trained, but forgot to save')\n"})

    assert run(job) == 1
    assert job.failure.startswith("script_no_model: the script wrote no model: train.py wrote nothing there")


def test_a_model_dir_without_a_model_names_what_was_written(tmp_path: Path) -> None:
    script = b"import os\nopen(os.path.join(os.environ['SM_MODEL_DIR'], 'weights.h5'), 'w').write('x')\n"
    job = make_job(tmp_path, {"train.py": script})

    assert run(job) == 1
    assert "wrote weights.h5 but left no SavedModel (saved_model.pb) or .keras file" in job.failure


def test_writes_outside_the_model_dir_are_reported_and_not_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = (
        b"import os\n"
        b"os.makedirs(os.path.join(os.environ['SM_MODEL_DIR'], 'saved_model'))\n"
        b"open(os.path.join(os.environ['SM_MODEL_DIR'], 'saved_model', 'saved_model.pb'), 'wb').write(b'pb')\n"
        b"open('../stray.bin', 'w').write('x')\n"  # the job dir, outside SM_MODEL_DIR
        b"open(os.path.join(os.environ['SM_OUTPUT_DATA_DIR'], 'metrics.txt'), 'w').write('ok')\n"
    )
    job = make_job(tmp_path, {"train.py": script})

    assert run(job) == 0
    out = capsys.readouterr().out
    assert "wrote 1 file(s) outside SM_MODEL_DIR and SM_OUTPUT_DATA_DIR, which are not kept: stray.bin" in out
    kept = {p.relative_to(job.model_dir).as_posix() for p in job.model_dir.rglob("*") if p.is_file()}
    assert kept == {"saved_model/saved_model.pb"}  # the Batch and twin uploads tar exactly this folder
    tarred = entrypoint.tar_model_dir(job.model_dir, tmp_path / "model.tar.gz")
    with tarfile.open(tarred) as tar:
        assert "stray.bin" not in {Path(n).name for n in tar.getnames()}


def test_requirements_that_fail_to_install_fail_the_job(tmp_path: Path) -> None:
    # --no-index: pip looks nowhere, so the missing package fails at once and offline
    reqs = b"--no-index\nmodelops-no-such-package-xyz==1.0\n"
    job = make_job(tmp_path, {"train.py": b"print('never runs')\n", "requirements.txt": reqs})

    status = run(job)

    assert status == 2
    assert job.failure.startswith(
        "requirements_failed: pip could not install requirements.txt (exit status 1)"
    )
    assert "modelops-no-such-package-xyz" in job.failure
    assert not (job.model_dir / "never").exists()


def _wheel(folder: Path) -> Path:
    """A one-module wheel (``tinydep``), built by hand: pip installs it from the file, offline."""
    files = {
        "tinydep/__init__.py": b"VALUE = 'from deps'\n",
        "tinydep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
        "tinydep-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    path = folder / "tinydep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(
            "tinydep-1.0.dist-info/RECORD", "\n".join([*record, "tinydep-1.0.dist-info/RECORD,,"]) + "\n"
        )
    return path


def test_installed_requirements_are_importable(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    script = (
        b"import os, tinydep\n"
        b"open(os.path.join(os.environ['SM_MODEL_DIR'], 'm.keras'), 'w').write(tinydep.VALUE)\n"
    )
    job = make_job(tmp_path, {"train.py": script, "requirements.txt": f"--no-index\n{wheel}\n".encode()})

    assert run(job) == 0
    assert (job.model_dir / "m.keras").read_text() == "from deps"
    assert (job.root / "deps" / "tinydep" / "__init__.py").is_file()


def test_an_archive_that_changed_after_packaging_is_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path, {"train.py": b"print(1)\n"}, sha="0" * 64)

    assert run(job) == 1
    assert job.failure.startswith("bad_code: the code archive's SHA-256 is ")


def test_an_archive_with_unsafe_members_is_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path, {"train.py": b"print(1)\n"}, sha="")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("train.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    job.archive.write_bytes(raw.getvalue())

    assert run(job) == 2
    assert job.failure.startswith("bad_code: the code archive cannot be unpacked: unsafe path")
    assert not (job.root / "escape.py").exists()


def test_half_a_script_mode_request_is_bad_input(tmp_path: Path) -> None:
    job = make_job(tmp_path, {"train.py": b"print(1)\n"})
    hps = {**job.hps}
    del hps["sagemaker_submit_directory"]
    (Path(job.env["SM_INPUT_CONFIG_DIR"]) / "hyperparameters.json").write_text(json.dumps(hps))

    assert run(job) == 2
    assert job.failure.startswith("bad_hyperparameters: script mode needs both sagemaker_program")


def test_the_download_names_the_archive(tmp_path: Path) -> None:
    job = make_job(tmp_path, {"train.py": b"print(1)\n"})
    s3 = FakeS3(job.archive)

    assert entrypoint.run_job(job.env, s3) == 1  # print(1) leaves no model
    assert s3.asked == [("registry", "code/demo/x.tar.gz")]


def test_without_script_hyperparameters_the_built_in_trainer_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(tmp_path, {"train.py": b""})
    hps = {k: v for k, v in job.hps.items() if not k.startswith("sagemaker_")}
    (Path(job.env["SM_INPUT_CONFIG_DIR"]) / "hyperparameters.json").write_text(json.dumps(hps))
    called: list[Any] = []
    monkeypatch.setattr(entrypoint, "run_sagemaker", lambda env: called.append(env) or 0)

    assert entrypoint.run_job(job.env, FakeS3(job.archive)) == 0
    assert called == [job.env]


def test_the_runner_uses_this_python(tmp_path: Path) -> None:
    job = make_job(
        tmp_path,
        {
            "train.py": b"import sys, os\nopen(os.path.join(os.environ['SM_MODEL_DIR'], 'x.keras'), 'w').write(sys.executable)\n"
        },
    )
    script = scripting.script_of(job.hps)
    assert script is not None
    scripting.run_script(script, job.archive, job.hps, job.env, log=job.lines.append)
    assert (job.model_dir / "x.keras").read_text() == sys.executable
    assert "running train.py (script mode)" in job.lines


def test_an_archive_with_a_symlink_is_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path, {"train.py": b"print(1)\n"}, sha="")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        link = tarfile.TarInfo("train.py")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    job.archive.write_bytes(raw.getvalue())

    assert run(job) == 2
    assert job.failure.startswith(
        "bad_code: the code archive cannot be unpacked: the training artifact contains a link"
    )
    assert not (job.root / "code" / "train.py").is_symlink()
